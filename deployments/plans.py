"""From models to what the pipeline runs: one placement's target, the build plan and the
release plan of a deployment, and the secrets its log masks."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings as django_settings

from .models import Deployment, Placement
from .pipeline import docker_client
from .pipeline.base import Release, Target
from .pipeline.runner import BuildPlan, ReleasePlan
from .pipeline.targets import build_target
from .pipeline.targets.settings import DockerSettings
from .pipeline.testrun import ContainerLimits
from .selectors.runs import last_successful


def placement_of(deployment: Deployment) -> Placement:
    return Placement.objects.select_related("environment", "repository").get(
        environment_id=deployment.environment_id, repository_id=deployment.repository_id
    )


def target_for(placement: Placement, *, health_path: str | None = None) -> Target:
    """The target of one application in one environment, from its parsed settings
    (`health_path` from the repository's shipmate.yaml, when it names one)."""
    return build_target(
        placement.environment.target_kind,
        name=placement.target_name,
        settings=placement.target_config(health_path=health_path),
        kubeconfig=placement.environment.kubeconfig,
    )


def build_plan(deployment: Deployment) -> BuildPlan:
    repo = deployment.repository
    current = last_successful(deployment.environment, repository=repo)
    docker_host = django_settings.DOCKER_HOST or None
    django_settings.WORK_DIR.mkdir(parents=True, exist_ok=True)
    auth = None
    if django_settings.REGISTRY_USERNAME:
        auth = {"username": django_settings.REGISTRY_USERNAME, "password": django_settings.REGISTRY_PASSWORD}
    return BuildPlan(
        repo_url=repo.git_url,
        ref=deployment.ref,
        image_repository=f"{django_settings.REGISTRY}/{repo.image_name}",
        dockerfile_path=repo.dockerfile_path,
        build_context=repo.build_context,
        test_command=repo.test_command,
        dockerfile_repo_url=repo.dockerfile_repo_url,
        dockerfile_repo_ref=repo.dockerfile_repo_ref,
        allowed_protocols=tuple(django_settings.GIT_ALLOWED_PROTOCOLS),
        build_network_mode=django_settings.BUILD_NETWORK_MODE,
        test_timeout=float(django_settings.TEST_TIMEOUT),
        test_limits=ContainerLimits(
            cpus=django_settings.TEST_CPUS,
            memory=django_settings.TEST_MEMORY,
            pids=django_settings.TEST_PIDS,
            scratch=django_settings.TEST_SCRATCH,
            read_only=django_settings.TEST_READ_ONLY,
        ),
        work_dir=django_settings.WORK_DIR,
        known_commit=deployment.commit_sha if deployment.image_digest else "",
        known_digest=deployment.image_digest,
        previous_commit=current.commit_sha if current else "",
        history_dir=repo.history_dir,
        docker=lambda: docker_client.connect(docker_host),
        registry_auth=auth,
    )


def _release(deployment: Deployment, image: str) -> Release:
    """The release as it would ship now: the placement's current variables (the
    environment's, overridden by the placement's own)."""
    placement = placement_of(deployment)
    variables = placement.config_variables()
    return _as_release(
        deployment,
        image,
        {v.name: v.value for v in variables},
        frozenset(v.name for v in variables if v.is_secret),
        # Keyed (see Environment.config_snapshot), so a low-entropy secret cannot be
        # guessed from the annotation a cluster shows to anyone who reads the Deployment.
        placement.config_hash()[:16],
    )


def _previous_release(good: Deployment) -> Release:
    """What `good` rolled out, variables included, so a rollback restores its configuration."""
    recorded = good.released_variables()
    if recorded is None:  # deployed before variables were recorded
        return _release(good, good.image_digest)
    variables, secret_names = recorded
    return _as_release(good, good.image_digest, variables, secret_names, good.config_hash[:16])


def _as_release(
    deployment: Deployment,
    image: str,
    variables: dict[str, str],
    secret_names: frozenset[str],
    config_hash: str,
) -> Release:
    return Release(
        image=image,
        variables=variables,
        secret_names=secret_names,
        config_hash=config_hash,
        annotations={
            "deployment_id": str(deployment.pk),
            "commit": deployment.commit_sha,
            "user": deployment.requested_by.get_username() if deployment.requested_by else "system",
        },
    )


def _smoke_url(placement: Placement, from_file: dict[str, Any]) -> str:
    """The placement's smoke URL, with the path the commit's shipmate.yaml gives."""
    path = from_file.get("smoke_path")
    if not path:
        return placement.effective_smoke_url
    if placement.effective_smoke_url:
        parts = urlsplit(placement.effective_smoke_url)
        return urlunsplit((parts.scheme, parts.netloc, path, "", ""))
    config = placement.target_config()
    if isinstance(config, DockerSettings):
        return f"http://{config.health_host}:{config.port}{path}"
    return ""


def release_plan(deployment: Deployment) -> ReleasePlan:
    env = deployment.environment
    placement = placement_of(deployment)
    from_file = deployment.pipeline_file or {}
    good = last_successful(env, repository=deployment.repository)
    return ReleasePlan(
        target=target_for(placement, health_path=from_file.get("health_path")),
        release=_release(deployment, deployment.image_digest),
        previous=_previous_release(good) if good else None,
        smoke_url=_smoke_url(placement, from_file),
    )


def secrets_of(deployment: Deployment) -> list[str]:
    """Every value the run's log must mask."""
    values = placement_of(deployment).secret_values()
    # A rollback may restore older secret values; mask those too.
    good = last_successful(deployment.environment, repository=deployment.repository)
    recorded = good.released_variables() if good else None
    if recorded:
        variables, secret_names = recorded
        values += [variables[name] for name in secret_names if variables.get(name)]
    if django_settings.REGISTRY_PASSWORD:
        values.append(django_settings.REGISTRY_PASSWORD)
    return values
