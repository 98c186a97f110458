"""The Docker rollout target against the real test engine and registry."""

from __future__ import annotations

import os
import re
import time
import urllib.request
from collections.abc import Callable, Iterator

import docker
import pytest

from deployments.pipeline.base import Cancelled, Release, RolloutFailed, TargetError, never_stop
from deployments.pipeline.health import check_url_once, wait_http_ok
from deployments.pipeline.targets import build_target
from deployments.pipeline.targets.docker import DockerTarget
from tests.live import free_port
from tests.pipeline.images import build_and_push, httpd_cmd, unique_name

REPOSITORY = "shipmate-test/docker-target"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Log(list[str]):
    def __call__(self, line: str) -> None:
        self.append(line)

    @property
    def text(self) -> str:
        return "\n".join(self)


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url=os.environ["DOCKER_HOST"])
    yield client
    client.close()


@pytest.fixture(scope="module")
def registry() -> str:
    return os.environ["SHIPMATE_REGISTRY"]


@pytest.fixture(scope="module")
def images(client: docker.DockerClient, registry: str) -> Iterator[dict[str, str]]:
    def site(text: str) -> dict[str, str]:
        return {"www/index.html": text, "www/healthz": "ok"}

    def push(tag: str, cmd: list[str], files: dict[str, str] | None = None) -> str:
        return build_and_push(client, registry, REPOSITORY, tag, cmd=cmd, files=files)

    built = {
        "v1": push("v1", httpd_cmd(), site("v1")),
        "v2": push("v2", httpd_cmd(), site("v2")),
        # Serves pages but has no /healthz, so the check sees 404 forever.
        "bad": push("bad", httpd_cmd(), {"www/index.html": "bad"}),
        "crash": push("crash", ["sh", "-c", "echo boom >&2; exit 3"]),
    }
    yield built
    for image in built.values():
        remove_image(client, image)


@pytest.fixture
def make_target(client: docker.DockerClient) -> Iterator[Callable[..., DockerTarget]]:
    made: list[DockerTarget] = []

    def make(**kwargs: object) -> DockerTarget:
        kwargs.setdefault("name", unique_name())
        kwargs.setdefault("port", free_port())
        kwargs.setdefault("health_timeout", 10.0)
        target = DockerTarget(client=client, **kwargs)  # type: ignore[arg-type]
        made.append(target)
        return target

    yield make
    for target in made:
        target.stop_and_remove()


def remove_image(client: docker.DockerClient, image: str) -> None:
    # By id: removing the digest reference alone would leave the tagged image behind.
    try:
        client.images.remove(client.images.get(image).id, force=True)
    except docker.errors.ImageNotFound:
        pass


def page(port: int) -> str:
    with NO_PROXY.open(f"http://127.0.0.1:{port}/", timeout=2) as response:
        return response.read().decode()


def containers_named(client: docker.DockerClient, name: str) -> list[str]:
    # The engine's name filter matches substrings, so compare exactly.
    return [c.name for c in client.containers.list(all=True, filters={"name": name}) if c.name == name]


def deploy(target: DockerTarget, image: str, log: Log | None = None, **release: object) -> None:
    log = log if log is not None else Log()
    target.apply(Release(image=image, **release), log=log)  # type: ignore[arg-type]
    target.wait(log=log, should_stop=never_stop)


def test_first_rollout_starts_the_container_and_serves_the_page(make_target, images, client) -> None:
    target = make_target()
    log = Log()
    deploy(target, images["v1"], log)

    assert page(target.port) == "v1"
    assert target.current() == images["v1"]
    container = client.containers.get(target.name)
    assert container.labels["shipmate.managed"] == "true"
    assert container.attrs["HostConfig"]["Init"] is True
    assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert "first release" in log.text


def test_second_rollout_replaces_the_container_and_drops_the_previous_one(
    make_target, images, client
) -> None:
    target = make_target()
    deploy(target, images["v1"])

    target.apply(Release(image=images["v2"]), log=Log())
    kept = client.containers.get(target.previous_name)
    assert kept.status == "exited"  # stopped but kept for undo until v2 is healthy
    target.wait(log=Log(), should_stop=never_stop)

    assert page(target.port) == "v2"
    assert target.current() == images["v2"]
    assert containers_named(client, target.previous_name) == []
    assert containers_named(client, target.name) == [target.name]


def test_unhealthy_release_fails_within_the_timeout_and_undo_restores_the_old_one(
    make_target, images
) -> None:
    target = make_target(health_timeout=3.0)
    deploy(target, images["v1"])
    log = Log()
    target.apply(Release(image=images["bad"]), log=log)

    started = time.monotonic()
    with pytest.raises(RolloutFailed, match=r"did not pass within 3 s \(last error: HTTP 404\)"):
        target.wait(log=log, should_stop=never_stop)
    assert 3.0 <= time.monotonic() - started < 6.0

    target.undo(Release(image=images["v1"]), log=log)
    assert page(target.port) == "v1"
    assert target.current() == images["v1"]
    assert f"putting {target.previous_name} back" in log.text


def test_crashing_container_is_reported_long_before_the_health_timeout(make_target, images) -> None:
    target = make_target(health_timeout=30.0)
    log = Log()
    target.apply(Release(image=images["crash"]), log=log)

    started = time.monotonic()
    with pytest.raises(RolloutFailed, match="exited with code 3") as failure:
        target.wait(log=log, should_stop=never_stop)
    assert time.monotonic() - started < 5.0
    assert "boom" in str(failure.value)
    assert "  boom" in log  # the container's last log lines are shown to the user


def test_undo_without_previous_container_runs_the_previous_release(make_target, images) -> None:
    target = make_target(health_timeout=1.0)
    target.apply(Release(image=images["bad"]), log=Log())
    with pytest.raises(RolloutFailed):
        target.wait(log=Log(), should_stop=never_stop)

    log = Log()
    target.undo(Release(image=images["v1"]), log=log)
    assert page(target.port) == "v1"
    assert target.current() == images["v1"]
    assert "afresh" in log.text


def test_undo_of_a_first_release_leaves_nothing_running(make_target, images, client) -> None:
    target = make_target(health_timeout=1.0)
    target.apply(Release(image=images["bad"]), log=Log())
    with pytest.raises(RolloutFailed):
        target.wait(log=Log(), should_stop=never_stop)

    target.undo(None, log=Log())
    assert containers_named(client, target.name) == []
    assert target.current() is None


def test_undo_that_cannot_restore_asks_for_manual_action(make_target, images, registry) -> None:
    target = make_target(health_timeout=1.0)
    target.apply(Release(image=images["bad"]), log=Log())
    with pytest.raises(RolloutFailed):
        target.wait(log=Log(), should_stop=never_stop)

    missing = f"{registry}/{REPOSITORY}@sha256:{'0' * 64}"
    with pytest.raises(RolloutFailed, match="rollback failed, manual action needed"):
        target.undo(Release(image=missing), log=Log())


def test_variables_and_annotations_reach_the_container(make_target, images, client) -> None:
    target = make_target()
    deploy(target, images["v1"], variables={"GREETING": "hi there"}, annotations={"Deployment ID": "42"})

    container = client.containers.get(target.name)
    env = container.attrs["Config"]["Env"]
    assert "GREETING=hi there" in env
    assert f"PORT={target.port}" in env
    assert container.labels["shipmate.deployment-id"] == "42"


def test_failed_start_puts_the_running_container_back(make_target, images, client) -> None:
    target = make_target()
    deploy(target, images["v1"])
    broken = make_target(name=target.name, port=target.port, network_mode="no-such-network")

    with pytest.raises(TargetError, match="could not start"):
        broken.apply(Release(image=images["v2"]), log=Log())
    # The old container was started again; give its httpd a moment to listen.
    wait_http_ok(f"http://127.0.0.1:{target.port}/", timeout=5, should_stop=never_stop, log=Log())
    assert page(target.port) == "v1"
    assert containers_named(client, target.previous_name) == []


def test_undo_after_a_failed_pull_leaves_the_running_container_alone(make_target, images, registry) -> None:
    target = make_target()
    deploy(target, images["v1"])
    again = make_target(name=target.name, port=target.port)

    with pytest.raises(TargetError, match="could not pull"):
        again.apply(Release(image=f"{registry}/{REPOSITORY}@sha256:{'0' * 64}"), log=Log())
    again.undo(None, log=Log())
    assert page(target.port) == "v1"


def test_apply_pulls_an_image_that_is_not_present_locally(make_target, client, registry) -> None:
    image = build_and_push(
        client, registry, REPOSITORY, "pulled", cmd=httpd_cmd(), files={"www/healthz": "ok"}
    )
    remove_image(client, image)
    target = make_target()
    log = Log()
    deploy(target, image, log)
    assert f"Pulling {image}" in log
    assert target.current() == image
    target.stop_and_remove()
    remove_image(client, image)


def test_cancel_while_waiting_raises_cancelled(make_target, images) -> None:
    target = make_target()
    target.apply(Release(image=images["bad"]), log=Log())
    with pytest.raises(Cancelled):
        target.wait(log=Log(), should_stop=lambda: True)


def test_check_describes_the_engine_and_the_container(make_target, images) -> None:
    target = make_target()
    assert "no container" in target.check()
    deploy(target, images["v1"])
    description = target.check()
    assert description.startswith("Docker ")
    assert f" at {os.environ['DOCKER_HOST']};" in description
    assert f"container {target.name} running image {images['v1']}" in description


def test_check_on_an_unreachable_engine_raises_target_error() -> None:
    client = docker.DockerClient(base_url="unix:///nonexistent.sock", version="1.41")
    target = DockerTarget(client=client, name="shipmate-x-dev", port=free_port())
    with pytest.raises(TargetError, match="cannot reach the Docker engine"):
        target.check()


@pytest.mark.parametrize(
    "settings", [{}, {"port": ""}, {"port": 0}, {"port": 70000}, {"port": "http"}, {"port": True}]
)
def test_from_settings_rejects_a_missing_or_bad_port(client, settings) -> None:
    with pytest.raises(TargetError, match="port"):
        DockerTarget.from_settings(client, "shipmate-x-dev", settings)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"network_mode": "none"}, "unreachable"),
        ({"network_mode": "bad name!"}, "network_mode"),
        ({"bind_host": "localhost"}, "bind_host"),
        ({"container_port": 0}, "container_port"),
        ({"health_path": "healthz"}, "health_path"),
        ({"health_timeout": "soon"}, "health_timeout"),
        ({"health_timeout": -1}, "health_timeout"),
    ],
)
def test_from_settings_rejects_bad_values(client, settings, message) -> None:
    with pytest.raises(TargetError, match=message):
        DockerTarget.from_settings(client, "shipmate-x-dev", {"port": 8080, **settings})


def test_from_settings_reads_every_key(client) -> None:
    target = DockerTarget.from_settings(
        client,
        "shipmate-x-dev",
        {
            "port": "8080",
            "network_mode": "bridge",
            "bind_host": "0.0.0.0",
            "container_port": 80,
            "health_path": "/ready",
            "health_timeout": 5,
        },
    )
    assert (target.port, target.container_port, target.network_mode) == (8080, 80, "bridge")
    assert (target.bind_host, target.health_timeout) == ("0.0.0.0", 5.0)
    assert target.health_url == "http://127.0.0.1:8080/ready"


def test_build_target_makes_a_docker_target_for_the_configured_engine() -> None:
    target = build_target(
        "docker", name="shipmate-x-dev", settings={"port": 8080, "docker_host": os.environ["DOCKER_HOST"]}
    )
    assert isinstance(target, DockerTarget)
    assert target.check().startswith("Docker ")


def test_build_target_reports_an_unreachable_engine_and_unknown_kinds() -> None:
    with pytest.raises(TargetError, match="unreachable"):
        build_target(
            "docker", name="shipmate-x-dev", settings={"port": 1, "docker_host": "unix:///nonexistent.sock"}
        )
    with pytest.raises(TargetError, match="unknown target kind 'ftp'"):
        build_target("ftp", name="shipmate-x-dev", settings={})


def test_check_url_once_only_follows_http_urls() -> None:
    ok, detail = check_url_once("file:///etc/hostname", timeout=1)
    assert not ok and "scheme" in detail
    ok, detail = check_url_once(f"http://127.0.0.1:{free_port()}/", timeout=1)
    assert (ok, detail) == (False, "connection refused")


def test_wait_http_ok_stops_at_once_when_fail_fast_reports_a_reason() -> None:
    started = time.monotonic()
    with pytest.raises(RolloutFailed, match="gone"):
        wait_http_ok(
            f"http://127.0.0.1:{free_port()}/",
            timeout=10,
            should_stop=never_stop,
            log=Log(),
            fail_fast=lambda: "gone",
        )
    assert time.monotonic() - started < 5.0  # well before the 10 s timeout


# -- two applications on one engine: a deployment that ran nothing never succeeds --------------


def test_two_targets_side_by_side_each_serve_their_own_page(make_target, images, client) -> None:
    one, two = make_target(), make_target()
    deploy(one, images["v1"])
    deploy(two, images["v2"])

    assert (page(one.port), page(two.port)) == ("v1", "v2")


def test_a_port_held_by_another_application_fails_the_apply_and_names_it(make_target, images, client) -> None:
    other = make_target()
    deploy(other, images["v1"])
    newcomer = make_target(port=other.port)
    log = Log()

    with pytest.raises(TargetError) as failure:
        newcomer.apply(Release(image=images["v2"]), log=log)

    assert str(failure.value).startswith(
        f"port {other.port} is already in use by container {other.name} (pid "
    )
    assert containers_named(client, newcomer.name) == []  # nothing was started
    assert page(other.port) == "v1"


def test_a_port_held_by_a_plain_process_is_named_with_its_pid(make_target, images) -> None:
    import socket

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    target = make_target(port=squatter.getsockname()[1])
    try:
        with pytest.raises(TargetError, match=rf"already in use by pid {os.getpid()} \("):
            target.apply(Release(image=images["v1"]), log=Log())
    finally:
        squatter.close()


def test_a_container_that_lost_the_port_after_the_check_never_reads_healthy(
    make_target, images, client
) -> None:
    """The other application takes the port between the free-port check and the start
    (or the check cannot see it): the other app answers the health check, the new
    container exits with a bind error, and the rollout fails instead of succeeding."""
    other = make_target()
    newcomer = make_target(port=other.port)
    newcomer._port_holder = lambda: None  # type: ignore[method-assign]  # the race, made certain
    deploy(other, images["v1"])
    log = Log()

    newcomer.apply(Release(image=images["v2"]), log=log)
    with pytest.raises(RolloutFailed) as failure:
        newcomer.wait(log=log, should_stop=never_stop)

    expected = (
        f"container {newcomer.name} could not bind port {other.port} (httpd: bind: Address already in use); "
        f"the health check was answered by container {other.name} (pid "
    )
    assert str(failure.value).startswith(expected)
    assert page(other.port) == "v1"


# -- user data lives in volumes, not in the container -------------------------------------------


def test_a_named_volume_keeps_its_files_across_a_redeploy_and_a_rollback(
    make_target, client, registry
) -> None:
    def release(tag: str) -> str:
        # Each release appends its name to a file on the volume, then serves that file.
        cmd = ["sh", "-c", f"echo {tag} >> /data/releases; cp /data/releases /www/releases; "
               "exec /bin/busybox httpd -f -p 127.0.0.1:$PORT -h /www"]  # fmt: skip
        return build_and_push(
            client, registry, REPOSITORY, f"vol-{tag}", cmd=cmd, files={"www/healthz": "ok"}
        )

    volume = f"shipmate-test-{unique_name()}"
    target = make_target(volumes=[f"{volume}:/data"])
    v1, v2 = release("one"), release("two")
    try:
        deploy(target, v1)
        deploy(target, v2)
        deploy(target, v1)  # the rollback ships the earlier image again
        with NO_PROXY.open(f"http://127.0.0.1:{target.port}/releases", timeout=2) as response:
            assert response.read().decode().split() == ["one", "two", "one"]
    finally:
        target.stop_and_remove()
        client.volumes.get(volume).remove(force=True)
        for image in (v1, v2):
            remove_image(client, image)


@pytest.mark.parametrize(
    ("volumes", "roots", "message"),
    [
        (["/etc:/host-etc"], ["/srv/apps"], "bind mount /etc is not under an allowed directory (/srv/apps)"),
        (["/srv/apps/../../etc:/x"], ["/srv/apps"], "bind mount /etc is not under an allowed directory"),
        (["/var/run/docker.sock:/sock"], [], "none (SHIPMATE_BIND_MOUNT_ROOTS is empty)"),
        (["data"], [], "must be SOURCE:/path"),
        (["data:relative"], [], "must be SOURCE:/path"),
        (["bad name:/x"], [], "volume name 'bad name'"),
        ("data:/x", [], "volumes must be a list"),
    ],
)
def test_volumes_refuse_bind_mounts_outside_the_allowed_directories(volumes, roots, message) -> None:
    from deployments.pipeline.targets.docker import parse_volumes

    with pytest.raises(TargetError, match=re.escape(message)):
        parse_volumes(volumes, roots)


def test_volumes_accept_named_volumes_and_binds_under_an_allowed_directory() -> None:
    from deployments.pipeline.targets.docker import parse_volumes

    assert parse_volumes(["data:/var/lib/app", "/srv/apps/shop/uploads:/uploads:ro"], ["/srv/apps"]) == [
        "data:/var/lib/app",
        "/srv/apps/shop/uploads:/uploads:ro",
    ]
