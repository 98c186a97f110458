"""Rollouts through a real worker: Kubernetes (kmock harness) and Docker (real
engine), automatic rollback on failure, and the one-click rollback."""

from __future__ import annotations

import urllib.request

import pytest

from deployments import services
from deployments.demo_app import add_commit, create_demo_repo
from deployments.models import Deployment, Status, Trigger

from .test_deployment_run import FINAL, wait_for

NS, NAME, CONTAINER = "shop", "web", "app"


@pytest.fixture
def k8s_env(make_environment, fake_cluster, request):
    name = f"k8s-{request.node.name[-20:].strip('_').lower().replace('_', '-')}"[:40].strip("-")
    deployment_name = f"{NAME}-{abs(hash(name)) % 10**6}"
    fake_cluster.seed_deployment(
        NS, deployment_name, containers={CONTAINER: "old@sha256:" + "0" * 64}, replicas=2
    )
    env = make_environment(
        "kube",
        target_kind="kubernetes",
        target_settings={
            "namespace": NS,
            "deployment": deployment_name,
            "container": CONTAINER,
            "poll_interval": 0.1,
            "timeout": 20,
            "max_restarts": 2,
        },
    )
    env.set_kubeconfig(fake_cluster.kubeconfig)
    env.save()
    secret = env.variables.create(name="API_TOKEN", is_secret=True)
    secret.set_value("tok-3f9a77c1e2")
    secret.save()
    env.variables.create(name="GREETING", plain_value="hi")
    fake_cluster.call(lambda: setattr(fake_cluster.controller, "default", "success"))
    return env


def image_of(cluster, env) -> str:
    dep = cluster.deployment(NS, env.target_settings["deployment"])
    return next(c["image"] for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == CONTAINER)


def deploy(user, repository, env, ref) -> Deployment:
    return wait_for(
        services.deployment_request(user=user, repository=repository, environment=env, ref=ref), FINAL
    )


@pytest.mark.django_db(transaction=True)
def test_kubernetes_deployment_rolls_the_digest_out_with_its_configuration(
    celery_worker, dev, repository, k8s_env, fake_cluster
):
    d = deploy(dev, repository, k8s_env, "main")
    assert d.status == Status.SUCCEEDED, d.error
    assert image_of(fake_cluster, k8s_env) == d.image_digest
    from kmock import resource  # noqa: F401  (the harness's resource keys)

    from tests.k8s.harness import CONFIGMAPS, SECRETS

    deployment_name = k8s_env.target_settings["deployment"]
    config = fake_cluster.get(CONFIGMAPS, NS, f"shipmate-{deployment_name}-config")
    secret = fake_cluster.get(SECRETS, NS, f"shipmate-{deployment_name}-secrets")
    assert config["data"] == {"GREETING": "hi"}
    assert "API_TOKEN" in (secret.get("data") or secret.get("stringData") or {})
    text = "\n".join(d.log_lines.values_list("text", flat=True))
    assert "tok-3f9a77c1e2" not in text
    assert d.config_hash == k8s_env.placements.get(repository=repository).config_hash()


@pytest.mark.django_db(transaction=True)
def test_failed_kubernetes_rollout_rolls_back_to_the_last_good_digest(
    celery_worker, dev, repository, k8s_env, fake_cluster
):
    good = deploy(dev, repository, k8s_env, "v1.0")
    assert good.status == Status.SUCCEEDED, good.error
    fake_cluster.set_scenario(good.image_digest, "success")
    fake_cluster.call(lambda: setattr(fake_cluster.controller, "default", "crashloop"))
    bad = deploy(dev, repository, k8s_env, "main")
    assert bad.status == Status.ROLLED_BACK, bad.error
    assert "CrashLoopBackOff" in bad.error
    assert image_of(fake_cluster, k8s_env) == good.image_digest
    assert bad.stages.get(name="rollout").status == "failed"


@pytest.mark.django_db(transaction=True)
def test_failed_rollback_says_manual_action_is_needed(celery_worker, dev, repository, k8s_env, fake_cluster):
    good = deploy(dev, repository, k8s_env, "v1.0")
    assert good.status == Status.SUCCEEDED, good.error
    fake_cluster.set_scenario(good.image_digest, "imagepull")
    fake_cluster.call(lambda: setattr(fake_cluster.controller, "default", "crashloop"))
    bad = deploy(dev, repository, k8s_env, "main")
    assert bad.status == Status.FAILED
    assert "rollback failed, manual action needed" in bad.error


@pytest.mark.django_db(transaction=True)
def test_one_click_rollback_redeploys_the_previous_digest_without_building(
    celery_worker, dev, repository, k8s_env, fake_cluster
):
    first = deploy(dev, repository, k8s_env, "v1.0")
    second = deploy(dev, repository, k8s_env, "main")
    assert first.status == second.status == Status.SUCCEEDED
    rollback = wait_for(services.deployment_rollback(user=dev, environment=k8s_env), FINAL)
    assert rollback.status == Status.SUCCEEDED, rollback.error
    assert rollback.trigger == Trigger.ROLLBACK and rollback.rollback_of == second
    assert rollback.image_digest == first.image_digest
    assert image_of(fake_cluster, k8s_env) == first.image_digest
    assert {s.name: s.status for s in rollback.stages.filter(name__in=["build", "test", "push"])} == {
        "build": "skipped",
        "test": "skipped",
        "push": "skipped",
    }


@pytest.mark.django_db(transaction=True)
def test_docker_rollout_that_never_gets_healthy_restores_the_previous_container(
    celery_worker, dev, repository, dev_env, tmp_path
):
    repo = create_demo_repo(tmp_path / "app")
    repository.git_url = str(repo)
    repository.save()
    good = deploy(dev, repository, dev_env, "main")
    assert good.status == Status.SUCCEEDED, good.error
    dockerfile = (
        (repo / "Dockerfile")
        .read_text()
        .replace("COPY www /www", 'COPY www /www\nRUN ["rm", "/www/healthz"]')
    )
    add_commit(repo, "break the health check", {"Dockerfile": dockerfile, "test.sh": "echo no tests\n"})
    dev_env.target_settings["health_timeout"] = 3
    dev_env.save()
    bad = deploy(dev, repository, dev_env, "main")
    assert bad.status == Status.ROLLED_BACK, bad.error
    page = urllib.request.urlopen(
        f"http://127.0.0.1:{dev_env.target_settings['port']}/healthz", timeout=5
    ).read()
    assert page.strip() == b"ok"


@pytest.mark.django_db(transaction=True)
def test_one_click_rollback_on_docker_serves_the_previous_version_again(
    celery_worker, dev, repository, dev_env
):
    v1 = deploy(dev, repository, dev_env, "v1.0")
    v2 = deploy(dev, repository, dev_env, "main")
    assert v1.status == v2.status == Status.SUCCEEDED
    url = f"http://127.0.0.1:{dev_env.target_settings['port']}/"
    assert b"Version 2" in urllib.request.urlopen(url, timeout=5).read()
    rollback = wait_for(services.deployment_rollback(user=dev, environment=dev_env), FINAL)
    assert rollback.status == Status.SUCCEEDED, rollback.error
    assert b"Version 1" in urllib.request.urlopen(url, timeout=5).read()


@pytest.mark.django_db(transaction=True)
def test_automatic_rollback_restores_the_configuration_of_the_last_good_release(
    celery_worker, dev, repository, k8s_env, fake_cluster
):
    from tests.k8s.harness import CONFIGMAPS

    good = deploy(dev, repository, k8s_env, "v1.0")
    assert good.status == Status.SUCCEEDED, good.error
    k8s_env.variables.filter(name="GREETING").update(plain_value="a bad value")
    fake_cluster.set_scenario(good.image_digest, "success")
    fake_cluster.call(lambda: setattr(fake_cluster.controller, "default", "crashloop"))
    bad = deploy(dev, repository, k8s_env, "main")
    assert bad.status == Status.ROLLED_BACK, bad.error
    config = fake_cluster.get(CONFIGMAPS, NS, f"shipmate-{k8s_env.target_settings['deployment']}-config")
    assert config["data"] == {"GREETING": "hi"}
    assert image_of(fake_cluster, k8s_env) == good.image_digest
    assert "tok-3f9a77c1e2" not in good.released_config  # stored encrypted


@pytest.mark.django_db(transaction=True)
def test_two_placements_in_one_cluster_environment_each_patch_only_their_own_deployment(
    celery_worker, dev, repository, make_environment, fake_cluster, tmp_path
):
    from deployments.demo_app import INDEX_HTML
    from deployments.models import Placement, Repository

    for name in ("web-demo", "web-hello"):
        fake_cluster.seed_deployment(NS, name, containers={CONTAINER: "old@sha256:" + "0" * 64}, replicas=1)
    env = make_environment(
        "cluster",
        target_kind="kubernetes",
        target_settings={"namespace": NS, "container": CONTAINER, "poll_interval": 0.1, "timeout": 20},
    )
    env.set_kubeconfig(fake_cluster.kubeconfig)
    env.save()
    fake_cluster.call(lambda: setattr(fake_cluster.controller, "default", "success"))
    path = create_demo_repo(tmp_path / "hello")
    add_commit(path, "hello", {"www/index.html": INDEX_HTML.format(version="hello")})
    hello = Repository.objects.create(
        name="hello", git_url=str(path), test_command="sh /app/test.sh", image_name="shipmate-test/hello"
    )
    Placement.objects.update_or_create(
        repository=repository, environment=env, defaults={"target_settings": {"deployment": "web-demo"}}
    )
    Placement.objects.create(repository=hello, environment=env, target_settings={"deployment": "web-hello"})

    first = services.deployment_request(user=dev, repository=repository, environment=env, ref="main")
    second = services.deployment_request(user=dev, repository=hello, environment=env, ref="main")
    first, second = wait_for(first, FINAL), wait_for(second, FINAL)

    assert (first.status, second.status) == (Status.SUCCEEDED, Status.SUCCEEDED), (first.error, second.error)
    assert first.image_digest != second.image_digest
    images = {}
    for name in ("web-demo", "web-hello"):
        containers = fake_cluster.deployment(NS, name)["spec"]["template"]["spec"]["containers"]
        images[name] = next(c["image"] for c in containers if c["name"] == CONTAINER)
    assert images == {"web-demo": first.image_digest, "web-hello": second.image_digest}
