"""The orchestrator of one claimed run: the lifecycle (services/lifecycle.py) claims and
settles it, plans.py turns the models into plans, the pipeline runs them, and the
recorder here stores stages and log lines as they happen."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import InterfaceError, OperationalError, connection
from django.utils import timezone

from . import crypto
from .logs import LogWriter, LogWriterError, Masker
from .models import Deployment, Phase, Stage, StageStatus, Status
from .pipeline.base import Cancelled, StageError
from .pipeline.runner import RolledBack, run_build, run_release
from .plans import build_plan, placement_of, release_plan, secrets_of
from .selectors.runs import approvals_needed, last_successful
from .services import lifecycle
from .services.lifecycle import Heartbeat

logger = logging.getLogger(__name__)


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
        self.record(
            tests_passed=earlier.tests_passed,
            pipeline_file=earlier.pipeline_file,
            committed_at=earlier.committed_at,
        )
        return earlier.image_digest


class BackToApproval(Exception):
    """The approvals no longer bind what would ship; people must decide again."""


def execute(deployment_id: int, *, worker: str) -> str:
    """Run what is next for one deployment. Returns the status it ended in."""
    claimed = lifecycle.deployment_claim(deployment_id=deployment_id, worker=worker)
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
        secrets = secrets_of(deployment)
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
    except (OperationalError, InterfaceError, LogWriterError) as exc:
        if isinstance(exc, LogWriterError) and not isinstance(
            exc.__cause__, (OperationalError, InterfaceError)
        ):
            logger.exception("deployment %s crashed", deployment.pk)
            status, error = Status.FAILED, f"The log could not be stored: {str(exc)[:300]}"
        else:
            logger.exception("deployment %s lost its database", deployment.pk)
            where = f" during the {rec.stopped_in} stage" if rec is not None and rec.stopped_in else ""
            cause = exc.__cause__ if isinstance(exc, LogWriterError) else exc
            status, error = Status.FAILED, f"The database was unreachable{where}: {str(cause).strip()[:300]}"
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
        try:
            if error:
                writer.line(error)
            writer.close()
        except Exception as exc:  # the log path never strands a run
            logger.exception("the log of deployment %s could not be stored", deployment.pk)
            lost = f"The log could not be stored completely ({str(exc)[:300] or exc.__class__.__name__})."
            status, error = Status.FAILED, f"{error} {lost}".strip()
    if status == Status.AWAITING_APPROVAL:
        _settle(lambda: lifecycle.deployment_await_approval(deployment=deployment, token=token, reason=error))
    elif status != Status.READY:  # a Ready run was parked by its turn request
        _settle(
            lambda: lifecycle.deployment_finish(
                deployment=deployment, status=status, error=error, token=token
            )
        )
    return status


# Pauses between attempts to write a run's outcome while the database is unreachable
# (a failover, a restart): about 30 s in all, then the reaper settles the run.
SETTLE_DELAYS = (0.5, 1, 2, 4, 8, 15)


def _settle(write: Callable[[], bool]) -> None:
    """Write the outcome, retrying while the database is unreachable. If it stays away,
    the run keeps its lease until the reaper settles it (as a lost worker's run), and
    the worker process lives on to take the next one."""
    for delay in (*SETTLE_DELAYS, None):
        try:
            write()
            return
        except (OperationalError, InterfaceError) as exc:
            connection.close()  # the next attempt opens a fresh connection
            if delay is None:
                logger.error("could not record the outcome of a run; the reaper will settle it: %s", exc)
                return
            logger.warning("database unavailable while recording a run's outcome; retrying in %s s", delay)
            time.sleep(delay)


def _cancel_message(deployment_id: int, rec: DbRecorder | None) -> str:
    reason = Deployment.objects.filter(pk=deployment_id).values_list("stop_reason", flat=True).first()
    where = f" during the {rec.stopped_in} stage" if rec is not None and rec.stopped_in else ""
    if reason:
        return f"Cancelled: {reason}{where}."
    return lifecycle.cancel_message(deployment_id, where or " while running")


def _run_phases(deployment: Deployment, phase: str, rec: DbRecorder, writer: LogWriter) -> str:
    if phase == Phase.BUILD:
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
        # Built ahead of its turn: roll out now if first in line, or wait as Ready.
        writer.flush()
        if not lifecycle.deployment_take_turn(deployment=deployment, token=rec.heartbeat.token):
            writer.line(f"Built and tested; waiting for the rollouts before it on {placement_of(deployment)}")
            return Status.READY
    _stop_if_cancelled(deployment, rec)
    reason, approved_hash = lifecycle.deployment_gate(deployment=deployment)
    if reason and phase == Phase.RELEASE:
        raise BackToApproval(f"not rolling out: {reason}")
    if reason:
        raise StageError(f"not rolling out: {reason}")
    plan = release_plan(deployment)
    try:
        env = deployment.environment
        placement = placement_of(deployment)
        if approvals_needed(deployment) and placement.config_hash() != approved_hash:
            raise BackToApproval("not rolling out: the configuration changed after the approval check")
        if phase == Phase.RELEASE:
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
    if rec.should_stop() or lifecycle.cancel_requested(deployment.pk):
        raise Cancelled()
