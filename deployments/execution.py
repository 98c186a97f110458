"""Glue between the plain-Python pipeline and the database: builds the plans
from models, records stages and logs, keeps the lease alive, settles the status."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.db import connection
from django.utils import timezone

from . import crypto
from .logs import LogWriter, Masker
from .models import Deployment, Placement, Stage, StageStatus, Status
from .pipeline import docker_client
from .pipeline.base import Cancelled, Release, StageError
from .pipeline.runner import BuildPlan, ReleasePlan, RolledBack, run_build, run_release
from .plans import placement_of, target_for
from .selectors.runs import approvals_needed, last_successful
from .services import runs

logger = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    """Extends the lease while the run is alive and notices a cancel request."""

    def __init__(self, deployment_id: int, token: str, interval: float = 0.5) -> None:
        super().__init__(name=f"heartbeat-{deployment_id}", daemon=True)
        self.deployment_id = deployment_id
        self.token = token
        self.interval = interval
        self.cancelled = threading.Event()
        self._done = threading.Event()

    def run(self) -> None:
        try:
            while not self._done.wait(self.interval):
                try:
                    owned, cancel = runs.deployment_heartbeat(
                        deployment_id=self.deployment_id, token=self.token
                    )
                except Exception:  # a busy database must not kill the run
                    logger.warning("heartbeat for deployment %s failed", self.deployment_id, exc_info=True)
                    continue
                if cancel or not owned:
                    # Not owned: the reaper settled or requeued the run; stop touching it.
                    self.cancelled.set()
        finally:
            connection.close()

    def stop(self) -> None:
        self._done.set()
        if self.is_alive():
            self.join(timeout=5)


class DbRecorder:
    def __init__(self, deployment: Deployment, writer: LogWriter, heartbeat: Heartbeat) -> None:
        self.deployment = deployment
        self.writer = writer
        self.heartbeat = heartbeat
        self.current = ""
        self.stopped_in = ""  # the stage an exception ended, for the run's message

    def _set_stage(self, name: str, status: str, note: str = "", **times: Any) -> None:
        Stage.objects.filter(deployment=self.deployment, name=name).update(
            status=status, note=note[:300], **times
        )
        self.writer.event("stage", name=name, status=status)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.current = name
        self._set_stage(name, StageStatus.RUNNING, started_at=timezone.now())
        status = StageStatus.FAILED
        try:
            yield
            status = StageStatus.SUCCEEDED
        except Cancelled:
            status = StageStatus.CANCELLED
            raise
        finally:
            if status != StageStatus.SUCCEEDED:
                self.stopped_in = name
            self.writer.flush()
            self._set_stage(name, status, finished_at=timezone.now())
            self.current = ""

    def skip(self, name: str, note: str) -> None:
        self.writer.line(f"{name}: skipped ({note})", stage=name)
        self._set_stage(name, StageStatus.SKIPPED, note)

    def log(self, text: str) -> None:
        self.writer.line(text, stage=self.current)

    def should_stop(self) -> bool:
        return self.heartbeat.cancelled.is_set()

    def record(self, **fields: Any) -> None:
        for key, value in fields.items():
            setattr(self.deployment, key, value)
        Deployment.objects.filter(pk=self.deployment.pk, claim_token=self.heartbeat.token).update(**fields)

    def find_reusable(self, commit_sha: str) -> str | None:
        repository = self.deployment.repository
        if repository.dockerfile_repo_url:
            return None  # the image definition lives elsewhere and may have moved on
        earlier = (
            Deployment.objects.filter(
                repository=repository,
                commit_sha=commit_sha,
                build_key=repository.build_key,
                stages__name="push",
                stages__status=StageStatus.SUCCEEDED,
            )
            .exclude(pk=self.deployment.pk)
            .exclude(image_digest="")
            .order_by("-created_at")
            .first()
        )
        if earlier is None:
            return None
        # The same commit has the same shipmate.yaml: its health and smoke paths still apply.
        self.record(tests_passed=earlier.tests_passed, pipeline_file=earlier.pipeline_file)
        return earlier.image_digest


def build_plan(deployment: Deployment) -> BuildPlan:
    repo = deployment.repository
    current = last_successful(deployment.environment, repository=repo)
    docker_host = settings.DOCKER_HOST or None
    settings.WORK_DIR.mkdir(parents=True, exist_ok=True)
    auth = None
    if settings.REGISTRY_USERNAME:
        auth = {"username": settings.REGISTRY_USERNAME, "password": settings.REGISTRY_PASSWORD}
    return BuildPlan(
        repo_url=repo.git_url,
        ref=deployment.ref,
        image_repository=f"{settings.REGISTRY}/{repo.image_name}",
        dockerfile_path=repo.dockerfile_path,
        build_context=repo.build_context,
        test_command=repo.test_command,
        dockerfile_repo_url=repo.dockerfile_repo_url,
        dockerfile_repo_ref=repo.dockerfile_repo_ref,
        allowed_protocols=tuple(settings.GIT_ALLOWED_PROTOCOLS),
        build_network_mode=settings.BUILD_NETWORK_MODE,
        test_timeout=float(settings.TEST_TIMEOUT),
        work_dir=settings.WORK_DIR,
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


def _smoke_url(placement: Placement, settings: dict[str, Any], from_file: dict[str, Any]) -> str:
    """The placement's smoke URL, with the path the commit's shipmate.yaml gives."""
    path = from_file.get("smoke_path")
    if not path:
        return placement.effective_smoke_url
    if placement.effective_smoke_url:
        parts = urlsplit(placement.effective_smoke_url)
        return urlunsplit((parts.scheme, parts.netloc, path, "", ""))
    if placement.environment.target_kind == "docker" and settings.get("port"):
        host = settings.get("health_host") or "127.0.0.1"
        return f"http://{host}:{settings['port']}{path}"
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
        smoke_url=_smoke_url(placement, placement.effective_settings, from_file),
    )


def _secrets(deployment: Deployment) -> list[str]:
    values = placement_of(deployment).secret_values()
    # A rollback may restore older secret values; mask those too.
    good = last_successful(deployment.environment, repository=deployment.repository)
    recorded = good.released_variables() if good else None
    if recorded:
        variables, secret_names = recorded
        values += [variables[name] for name in secret_names if variables.get(name)]
    if settings.REGISTRY_PASSWORD:
        values.append(settings.REGISTRY_PASSWORD)
    return values


class BackToApproval(Exception):
    """The approvals no longer bind what would ship; people must decide again."""


def execute(deployment_id: int, *, worker: str) -> str:
    """Run what is next for one deployment. Returns the status it ended in."""
    claimed = runs.deployment_claim(deployment_id=deployment_id, worker=worker)
    if claimed is None:
        return "not claimed"
    deployment, phase = claimed
    token = deployment.claim_token
    heartbeat = Heartbeat(deployment.pk, token)
    secrets: list[str] = []
    writer: LogWriter | None = None
    status, error = Status.FAILED, ""
    rec: DbRecorder | None = None
    try:
        # Inside the try: a secret that cannot be decrypted must fail the run, not strand it.
        secrets = _secrets(deployment)
        writer = LogWriter(deployment.pk, secrets=secrets)
        heartbeat.start()
        rec = DbRecorder(deployment, writer, heartbeat)
        status = _run_phases(deployment, phase, rec, writer)
    except Cancelled:
        status, error = Status.CANCELLED, _cancel_message(deployment.pk, rec)
    except BackToApproval as exc:
        status, error = Status.AWAITING_APPROVAL, str(exc)
    except RolledBack as exc:
        status, error = Status.ROLLED_BACK, str(exc)
    except StageError as exc:
        status, error = Status.FAILED, str(exc)
    except Exception as exc:  # never leave a run in "running"
        logger.exception("deployment %s crashed", deployment.pk)
        where = f" in the {rec.stopped_in} stage" if rec is not None and rec.stopped_in else ""
        status, error = (
            Status.FAILED,
            f"Shipmate failed{where}: {str(exc)[:300] or exc.__class__.__name__} (the worker log has the details)",
        )
    finally:
        heartbeat.stop()
    error = Masker(secrets)(error)
    if writer is not None:
        if error:
            writer.line(error)
        writer.close()
    if status == Status.AWAITING_APPROVAL:
        runs.deployment_await_approval(deployment=deployment, token=token, reason=error)
    else:
        runs.deployment_finish(deployment=deployment, status=status, error=error, token=token)
    return status


def _cancel_message(deployment_id: int, rec: DbRecorder | None) -> str:
    reason = Deployment.objects.filter(pk=deployment_id).values_list("stop_reason", flat=True).first()
    where = f" during the {rec.stopped_in} stage" if rec is not None and rec.stopped_in else ""
    if reason:
        return f"Cancelled: {reason}{where}."
    return f"Cancelled{where}." if where else "Cancelled while running."


def _run_phases(deployment: Deployment, phase: str, rec: DbRecorder, writer: LogWriter) -> str:
    if phase == runs.BUILD:
        rec.record(build_key=deployment.repository.build_key)
        run_build(build_plan(deployment), rec)
        if approvals_needed(deployment) > 0:
            writer.event("stage", name="approval", status=StageStatus.RUNNING)
            writer.line(
                f"Waiting for approval to deploy {deployment.image_digest} to {deployment.environment}"
            )
            return Status.AWAITING_APPROVAL
        rec.skip("approval", "not required")
    _stop_if_cancelled(deployment, rec)
    reason, approved_hash = runs.deployment_gate(deployment=deployment)
    if reason and phase == runs.RELEASE:
        raise BackToApproval(f"not rolling out: {reason}")
    if reason:
        raise StageError(f"not rolling out: {reason}")
    plan = release_plan(deployment)
    try:
        env = deployment.environment
        placement = placement_of(deployment)
        if approvals_needed(deployment) and placement.config_hash() != approved_hash:
            raise BackToApproval("not rolling out: the configuration changed after the approval check")
        if phase == runs.RELEASE:
            Stage.objects.filter(deployment=deployment, name="approval").update(
                status=StageStatus.SUCCEEDED, finished_at=timezone.now()
            )
            writer.event("stage", name="approval", status=StageStatus.SUCCEEDED)
        good = last_successful(env, repository=deployment.repository)
        released = json.dumps(
            {"variables": plan.release.variables, "secret_names": sorted(plan.release.secret_names)}
        )
        rec.record(
            config_hash=approved_hash,
            config_snapshot=placement.config_snapshot(),
            released_config=crypto.encrypt(released),
            replaced=good,
        )
        _stop_if_cancelled(deployment, rec)
        run_release(plan, rec)
    finally:
        plan.target.close()
    return Status.SUCCEEDED


def _stop_if_cancelled(deployment: Deployment, rec: DbRecorder) -> None:
    # The heartbeat polls twice a second; between phases a click may be newer than that.
    if rec.should_stop() or runs.cancel_requested(deployment.pk):
        raise Cancelled()
