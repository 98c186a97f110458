"""The Kubernetes rollout target against kmock over HTTP, with the controller emulator from tests.k8s."""

from __future__ import annotations

import base64
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from deployments.pipeline.base import Cancelled, Release, RolloutFailed, TargetError, never_stop
from deployments.pipeline.targets import build_target
from deployments.pipeline.targets.k8s_status import HASH_ANNOTATION, config_hash
from deployments.pipeline.targets.kubernetes import KubernetesTarget
from tests.k8s.harness import CONFIGMAPS, SECRETS, FakeCluster


class Log(list[str]):
    def __call__(self, line: str) -> None:
        self.append(line)

    @property
    def text(self) -> str:
        return "\n".join(self)


@pytest.fixture(scope="module")
def cluster() -> Iterator[FakeCluster]:
    with FakeCluster.running() as cluster:
        yield cluster


@pytest.fixture
def ns() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def log() -> Log:
    return Log()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def digest() -> str:
    return f"127.0.0.1:5001/shop/web@sha256:{uuid.uuid4().hex * 2}"


def release(image: str, variables: dict[str, str] | None = None, secrets: set[str] = frozenset()) -> Release:
    return Release(
        image=image,
        variables=variables or {},
        secret_names=frozenset(secrets),
        annotations={"deployment_id": "42", "commit": "0123abc", "user": "alice"},
    )


@pytest.fixture
def make_target(cluster: FakeCluster, ns: str) -> Callable[..., KubernetesTarget]:
    def make(**settings: Any) -> KubernetesTarget:
        base = {"namespace": ns, "deployment": "web", "container": "app", "poll_interval": 0.1, "timeout": 30}
        return KubernetesTarget.from_settings(
            name="k8s", settings=base | settings, kubeconfig=cluster.kubeconfig
        )

    return make


@pytest.fixture
def old_image(cluster: FakeCluster, ns: str) -> str:
    image = digest()
    cluster.seed_deployment(ns, "web", containers={"app": image}, replicas=2)
    return image


def container(deployment: dict[str, Any], name: str = "app") -> dict[str, Any]:
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def test_rollout_to_new_digest_succeeds(cluster, ns, old_image, make_target, log) -> None:
    new = digest()
    target = make_target()
    target.apply(release(new), log=log)
    target.wait(log=log, should_stop=never_stop)

    deployment = cluster.deployment(ns, "web")
    assert container(deployment)["image"] == new
    assert (target.generation_before, target.generation_after) == (1, 2)
    assert log[-1] == f"deployment {ns}/web successfully rolled out"
    assert target.current() == new


def test_slow_rollout_logs_each_progress_step_once(cluster, ns, make_target, log) -> None:
    cluster.seed_deployment(ns, "web", containers={"app": digest()}, replicas=3)
    new = digest()
    cluster.set_scenario(new, "slow")
    target = make_target()
    target.apply(release(new), log=log)
    started = time.monotonic()
    target.wait(log=log, should_stop=never_stop)

    assert time.monotonic() - started > 2
    progress = [line for line in log if line.startswith("Waiting for rollout")]
    assert progress == [
        "Waiting for rollout to finish: 0 out of 3 new replicas have been updated...",
        "Waiting for rollout to finish: 1 out of 3 new replicas have been updated...",
        "Waiting for rollout to finish: 2 out of 3 new replicas have been updated...",
        "Waiting for rollout to finish: 3 old replicas are pending termination...",
        "Waiting for rollout to finish: 2 of 3 updated replicas are available...",
    ]
    assert log[-1] == f"deployment {ns}/web successfully rolled out"


def test_progress_deadline_exceeded_fails_the_rollout(cluster, ns, old_image, make_target, log) -> None:
    new = digest()
    cluster.set_scenario(new, "deadline")
    target = make_target()
    target.apply(release(new), log=log)
    with pytest.raises(RolloutFailed, match=f"deployment {ns}/web exceeded its progress deadline"):
        target.wait(log=log, should_stop=never_stop)


def test_crash_looping_pod_fails_the_rollout_within_seconds(cluster, ns, old_image, make_target, log) -> None:
    new = digest()
    cluster.set_scenario(new, "crashloop")
    target = make_target(timeout=60)
    target.apply(release(new), log=log)
    started = time.monotonic()
    with pytest.raises(RolloutFailed, match=r"pod web-g2-0 container app: CrashLoopBackOff \(restarts \d+\)"):
        target.wait(log=log, should_stop=never_stop)

    assert time.monotonic() - started < 5
    assert "last 3 log lines of pod web-g2-0 container app (previous):" in log
    assert "  panic: connection refused" in log


def test_image_pull_backoff_fails_the_rollout(cluster, ns, old_image, make_target, log) -> None:
    new = digest()
    cluster.set_scenario(new, "imagepull")
    target = make_target(timeout=60)
    target.apply(release(new), log=log)
    with pytest.raises(RolloutFailed, match=r"container app: ImagePullBackOff \(restarts 0\)"):
        target.wait(log=log, should_stop=never_stop)
    # The API refuses logs of a container that never started; that must not hide the real error.
    assert log[-1].startswith('(container log unavailable: HTTP 400: container "app"')


def test_container_restarting_max_restarts_times_fails_the_rollout(cluster, ns, old_image, make_target, log):
    new = digest()
    cluster.set_scenario(new, "restarts")
    target = make_target(max_restarts=2)
    target.apply(release(new), log=log)
    with pytest.raises(RolloutFailed, match=r"container app: restarted [23] times"):
        target.wait(log=log, should_stop=never_stop)


def test_status_of_an_older_generation_is_not_success(cluster, ns, old_image, make_target, log) -> None:
    new = digest()
    cluster.set_scenario(new, "stale")  # the controller never observes generation 2
    target = make_target(timeout=1.5)
    target.apply(release(new), log=log)
    assert cluster.deployment(ns, "web")["status"]["availableReplicas"] == 2  # looks complete

    with pytest.raises(RolloutFailed, match=r"rollout did not finish within 1.5 s"):
        target.wait(log=log, should_stop=never_stop)
    assert log[-1] == "Waiting for deployment spec update to be observed (generation 2)..."


def test_cancel_stops_the_wait(cluster, ns, old_image, make_target, log) -> None:
    new = digest()
    cluster.set_scenario(new, "stale")
    target = make_target()
    target.apply(release(new), log=log)
    asked = time.monotonic() + 0.3
    started = time.monotonic()
    with pytest.raises(Cancelled):
        target.wait(log=log, should_stop=lambda: time.monotonic() > asked)
    assert time.monotonic() - started < 5  # a stale rollout would otherwise wait for its timeout


def test_paused_deployment_is_refused_before_anything_is_changed(cluster, ns, make_target, log) -> None:
    old = digest()
    cluster.seed_deployment(ns, "web", containers={"app": old}, paused=True)
    target = make_target()
    with pytest.raises(TargetError, match=f"Deployment {ns}/web is paused"):
        target.apply(release(digest(), {"A": "1"}), log=log)

    assert cluster.patch_count(ns, "web") == 0
    assert container(cluster.deployment(ns, "web"))["image"] == old
    assert cluster.get(CONFIGMAPS, ns, "shipmate-web-config") is None


def test_missing_deployment_is_a_target_error(cluster, ns, make_target, log) -> None:
    with pytest.raises(TargetError, match=f"Deployment {ns}/web not found"):
        make_target().apply(release(digest()), log=log)
    assert cluster.get(CONFIGMAPS, ns, "shipmate-web-config") is None


def test_missing_container_is_a_target_error_naming_the_containers(cluster, ns, old_image, make_target, log):
    with pytest.raises(TargetError, match=r"container 'api' not found in Deployment .*\(has: app\)"):
        make_target(container="api").apply(release(digest()), log=log)
    assert cluster.patch_count(ns, "web") == 0


def test_image_without_digest_is_refused(cluster, ns, old_image, make_target, log) -> None:
    with pytest.raises(TargetError, match="digest reference"):
        make_target().apply(release("127.0.0.1:5001/shop/web:latest"), log=log)
    assert cluster.patch_count(ns, "web") == 0


def test_only_the_named_container_changes(cluster, ns, make_target, log) -> None:
    sidecar = digest()
    cluster.seed_deployment(ns, "web", containers={"proxy": sidecar, "app": digest()})
    new = digest()
    target = make_target()
    target.apply(release(new), log=log)
    target.wait(log=log, should_stop=never_stop)

    deployment = cluster.deployment(ns, "web")
    assert container(deployment, "proxy") == {"name": "proxy", "image": sidecar}
    assert container(deployment)["image"] == new


def test_variables_go_to_a_configmap_and_secret_that_the_container_loads(
    cluster, ns, old_image, make_target, log
):
    target = make_target()
    variables = {"LOG_LEVEL": "info", "DB_PASSWORD": "hunter2"}
    target.apply(release(digest(), variables, {"DB_PASSWORD"}), log=log)

    configmap = cluster.get(CONFIGMAPS, ns, "shipmate-web-config")
    secret = cluster.get(SECRETS, ns, "shipmate-web-secrets")
    assert configmap["data"] == {"LOG_LEVEL": "info"}
    assert secret["data"] == {"DB_PASSWORD": base64.b64encode(b"hunter2").decode()}
    for obj in (configmap, secret):
        assert obj["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "shipmate"}
    deployment = cluster.deployment(ns, "web")
    assert container(deployment)["envFrom"] == [
        {"configMapRef": {"name": "shipmate-web-config"}},
        {"secretRef": {"name": "shipmate-web-secrets"}},
    ]
    assert deployment["spec"]["template"]["metadata"]["annotations"][HASH_ANNOTATION] == config_hash(
        variables
    )


def test_config_change_alone_rolls_the_pods_and_drops_removed_variables(
    cluster, ns, old_image, make_target, log
):
    image = digest()
    first = make_target()
    first.apply(release(image, {"A": "1", "B": "2"}), log=log)
    first.wait(log=log, should_stop=never_stop)

    second = make_target()
    second.apply(release(image, {"A": "changed"}), log=log)
    second.wait(log=log, should_stop=never_stop)

    assert second.generation_after == first.generation_after + 1
    assert cluster.get(CONFIGMAPS, ns, "shipmate-web-config")["data"] == {"A": "changed"}
    # envFrom entries are added once, not per rollout.
    assert len(container(cluster.deployment(ns, "web"))["envFrom"]) == 2


def test_configmap_not_managed_by_shipmate_is_not_overwritten(
    cluster, ns, old_image, make_target, log
) -> None:
    foreign = {"metadata": {"name": "shipmate-web-config", "namespace": ns}, "data": {"KEEP": "me"}}
    cluster.call(
        lambda: cluster.emulator.objects.__setitem__((CONFIGMAPS, ns, "shipmate-web-config"), foreign)
    )
    with pytest.raises(TargetError, match="not labelled app.kubernetes.io/managed-by=shipmate"):
        make_target().apply(release(digest(), {"A": "1"}), log=log)
    assert cluster.get(CONFIGMAPS, ns, "shipmate-web-config")["data"] == {"KEEP": "me"}
    assert cluster.patch_count(ns, "web") == 0


def test_change_cause_names_deployment_commit_and_user(cluster, ns, old_image, make_target, log) -> None:
    make_target().apply(release(digest()), log=log)
    annotations = cluster.deployment(ns, "web")["metadata"]["annotations"]
    assert annotations["kubernetes.io/change-cause"] == "shipmate deployment #42 commit 0123abc by alice"


def test_undo_restores_the_previous_digest_after_a_crash_loop(
    cluster, ns, old_image, make_target, log
) -> None:
    bad = digest()
    cluster.set_scenario(bad, "crashloop")
    target = make_target()
    target.apply(release(bad), log=log)
    with pytest.raises(RolloutFailed):
        target.wait(log=log, should_stop=never_stop)

    failed_at = time.monotonic()
    target.undo(release(old_image), log=log)

    assert time.monotonic() - failed_at < 3
    deployment = cluster.deployment(ns, "web")
    assert container(deployment)["image"] == old_image
    assert deployment["status"]["observedGeneration"] == 3
    assert log[-1] == f"restored Deployment {ns}/web to {old_image}"


def test_failed_undo_asks_for_manual_action(cluster, ns, old_image, make_target, log) -> None:
    bad = digest()
    cluster.set_scenario(bad, "crashloop")
    cluster.set_scenario(old_image, "imagepull")  # e.g. the old image was deleted from the registry
    target = make_target()
    target.apply(release(bad), log=log)
    with pytest.raises(RolloutFailed):
        target.wait(log=log, should_stop=never_stop)

    with pytest.raises(RolloutFailed, match=r"rollback failed, manual action needed: pod .*ImagePullBackOff"):
        target.undo(release(old_image), log=log)


def test_undo_without_a_previous_release_asks_for_manual_action(cluster, ns, old_image, make_target, log):
    with pytest.raises(RolloutFailed, match="rollback failed, manual action needed: no previous release"):
        make_target().undo(None, log=log)
    assert log == ["no earlier successful release recorded; nothing to restore"]


def test_check_describes_the_cluster_and_the_deployment(cluster, ns, old_image, make_target) -> None:
    assert make_target().check() == (
        f"Kubernetes v1.26.4+k3s1 at {cluster.url}: deployment {ns}/web, container app, image {old_image}"
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"deployment": "nope"}, "Deployment {ns}/nope not found"),
        ({"container": "nope"}, "container 'nope' not found"),
    ],
)
def test_check_explains_what_is_missing(cluster, ns, old_image, make_target, settings, message) -> None:
    with pytest.raises(TargetError, match=message.format(ns=ns)):
        make_target(**settings).check()


def test_check_explains_a_paused_deployment(cluster, ns, make_target) -> None:
    cluster.seed_deployment(ns, "web", containers={"app": digest()}, paused=True)
    with pytest.raises(TargetError, match="is paused; resume it first"):
        make_target().check()


def test_check_reports_an_unreachable_api(cluster, ns) -> None:
    kubeconfig = cluster.kubeconfig.replace(cluster.url, f"http://127.0.0.1:{closed_port()}")
    target = KubernetesTarget.from_settings(
        name="k8s", settings={"namespace": ns, "deployment": "web", "container": "app"}, kubeconfig=kubeconfig
    )
    with pytest.raises(
        TargetError, match=r"cannot connect to the Kubernetes API at http://127.0.0.1:\d+: .*refused"
    ):
        target.check()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"deployment": "web", "container": "app"}, "'namespace' is required"),
        (
            {"namespace": "n", "deployment": "web", "container": "app", "timeout": "soon"},
            "'timeout' must be a number",
        ),
        (
            {"namespace": "n", "deployment": "web", "container": "app", "max_restarts": 0},
            "must be a positive",
        ),
    ],
)
def test_bad_settings_are_target_errors(cluster, settings, message) -> None:
    with pytest.raises(TargetError, match=message):
        KubernetesTarget.from_settings(name="k8s", settings=settings, kubeconfig=cluster.kubeconfig)


def test_missing_connection_settings_are_a_target_error() -> None:
    with pytest.raises(TargetError, match="needs a kubeconfig"):
        KubernetesTarget.from_settings(
            name="k8s", settings={"namespace": "n", "deployment": "d", "container": "c"}
        )


def test_broken_kubeconfig_is_a_target_error() -> None:
    with pytest.raises(TargetError, match="invalid Kubernetes connection settings"):
        KubernetesTarget.from_settings(
            name="k8s",
            settings={"namespace": "n", "deployment": "d", "container": "c"},
            kubeconfig="clusters: [",
        )


def test_build_target_makes_a_kubernetes_target_from_environment_settings(cluster, ns, old_image) -> None:
    settings = {"namespace": ns, "deployment": "web", "container": "app", "timeout": "90"}
    target = build_target("kubernetes", name="live", settings=settings, kubeconfig=cluster.kubeconfig)
    assert isinstance(target, KubernetesTarget)
    assert target.timeout == 90
    assert target.current() == old_image


def test_current_is_none_when_the_deployment_is_gone(cluster, ns, make_target) -> None:
    assert make_target().current() is None


def test_current_raises_when_the_api_is_unreachable(cluster, ns) -> None:
    kubeconfig = cluster.kubeconfig.replace(cluster.url, f"http://127.0.0.1:{closed_port()}")
    target = KubernetesTarget.from_settings(
        name="k8s", settings={"namespace": ns, "deployment": "web", "container": "app"}, kubeconfig=kubeconfig
    )
    with pytest.raises(TargetError, match="cannot connect"):
        target.current()
