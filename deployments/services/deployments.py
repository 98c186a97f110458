from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction

from .. import permissions
from ..feed import placement_changed
from ..logs import discard_stream
from ..models import Deployment, Environment, Placement, Repository, Stage, Status, Trigger
from ..models.deployment import STAGE_NAMES
from ..pipeline import git, history
from ..pipeline.base import StageError
from ..pipeline.git import GitError, validate_ref
from ..selectors.runs import hold_reason, last_successful, rollback_candidate
from . import events
from .audit import audit
from .lifecycle import transition
from .queue import dispatch_build


class DeployRefused(Exception):
    """The request breaks a rule; the message is shown to the user."""


class NeedsConfirmation(DeployRefused):
    """The request is allowed but deserves a second look (older code)."""


def older_code_warning(*, repository: Repository, environment: Environment, ref: str) -> str | None:
    """Says so when `ref` is an ancestor of what the environment runs now."""
    current = last_successful(environment, repository=repository)
    if current is None or not current.commit_sha:
        return None
    protocols = settings.GIT_ALLOWED_PROTOCOLS
    try:
        sha = git.resolve_ref(repository.git_url, ref, allowed_protocols=protocols)
        older = history.is_older(
            repository.git_url, sha, current.commit_sha, repository.history_dir, allowed_protocols=protocols
        )
    except StageError:
        return None  # the worker reports a bad ref with the full message
    if not older:
        return None
    return (
        f"{ref} ({sha[:10]}) is older than what {environment} runs now ({current.short_sha}, "
        f"deployment #{current.pk}). Confirm to deploy older code."
    )


def _check_can_deploy(*, user: Any, environment: Environment, break_glass_reason: str) -> None:
    if not permissions.can_deploy(user, environment):
        raise DeployRefused(f"You may not deploy to {environment}.")
    held = hold_reason(environment, None, break_glass=bool(break_glass_reason.strip()))
    if held and environment.active_freeze() and not environment.is_locked:
        held += ". A break-glass deploy needs a written reason and a second person's approval."
    if held:
        raise DeployRefused(held)


def _create(
    *,
    user: Any,
    repository: Repository,
    environment: Environment,
    ref: str,
    trigger: str,
    source_ip: str | None,
    break_glass_reason: str = "",
    rollback_of: Deployment | None = None,
    reuse_of: Deployment | None = None,
) -> Deployment:
    """A new deployment; `reuse_of` ships that deployment's image instead of building."""
    placement = Placement.objects.filter(repository=repository, environment=environment, enabled=True).first()
    if placement is None:
        raise DeployRefused(f"{repository} is not placed in {environment}: an admin adds it there first.")
    if placement.is_locked:  # the environment's lock and freeze were checked before
        raise DeployRefused(hold_reason(environment, placement, break_glass=True) or "")
    freeze = environment.active_freeze()
    deployment = Deployment.objects.create(
        repository=repository,
        environment=environment,
        ref=ref,
        requested_by=user,
        trigger=trigger,
        rollback_of=rollback_of,
        commit_sha=reuse_of.commit_sha if reuse_of else "",
        committed_at=reuse_of.committed_at if reuse_of else None,
        image_digest=reuse_of.image_digest if reuse_of else "",
        tests_passed=reuse_of.tests_passed if reuse_of else None,
        # The image's commit keeps its shipmate.yaml: its health and smoke paths still apply.
        pipeline_file=reuse_of.pipeline_file if reuse_of else {},
        break_glass_reason=break_glass_reason.strip() if freeze else "",
    )
    Stage.objects.bulk_create(
        Stage(deployment=deployment, name=name, position=i) for i, name in enumerate(STAGE_NAMES)
    )
    # A stream left under this id (a database reset or restored while Redis kept
    # its data) must not be replayed as this run's log.
    transaction.on_commit(lambda: discard_stream(deployment.pk))
    action = "deployment.break_glass" if deployment.break_glass_reason else f"deployment.{trigger}"
    audit(
        user,
        action,
        deployment,
        source_ip=source_ip,
        environment=environment.name,
        repository=repository.name,
        ref=ref,
        reason=deployment.break_glass_reason,
        freeze=freeze.reason if freeze else "",
    )
    events.deployment_event.send(Deployment, deployment=deployment, event="requested", actor=user)
    dispatch_build(deployment.pk)
    placement_changed(environment.pk, repository.pk)
    return deployment


def deployment_request(
    *,
    user: Any,
    repository: Repository,
    environment: Environment,
    ref: str,
    trigger: str = Trigger.CLICK,
    source_ip: str | None = None,
    break_glass_reason: str = "",
    confirm_older: bool = False,
) -> Deployment:
    ref = ref.strip()
    try:
        validate_ref(ref)
    except GitError as exc:
        raise DeployRefused(str(exc)) from exc
    _check_can_deploy(user=user, environment=environment, break_glass_reason=break_glass_reason)
    # Outside the transaction: it may talk to the git server, and a transaction
    # (on SQLite, the database's write lock) must not wait for the network.
    if not confirm_older:
        warning = older_code_warning(repository=repository, environment=environment, ref=ref)
        if warning:
            raise NeedsConfirmation(warning)
    return _request(
        user=user,
        repository=repository,
        environment=environment,
        ref=ref,
        trigger=trigger,
        source_ip=source_ip,
        break_glass_reason=break_glass_reason,
    )


@transaction.atomic
def _request(*, user: Any, environment: Environment, break_glass_reason: str, **fields: Any) -> Deployment:
    environment = Environment.objects.get(pk=environment.pk)  # the lock may have changed meanwhile
    _check_can_deploy(user=user, environment=environment, break_glass_reason=break_glass_reason)
    return _create(user=user, environment=environment, break_glass_reason=break_glass_reason, **fields)


@transaction.atomic
def deployment_cancel(*, user: Any, deployment: Deployment, source_ip: str | None = None) -> Deployment:
    deployment = Deployment.objects.select_for_update().get(pk=deployment.pk)
    if not permissions.can_cancel(user, deployment):
        raise DeployRefused("You may not cancel this deployment.")
    if deployment.status == Status.RUNNING:
        # The worker sees the flag within a second, stops the running step and
        # settles the status itself.
        deployment.cancel_requested = True
        deployment.save(update_fields=["cancel_requested"])
    else:
        transition(
            deployment,
            Status.CANCELLED,
            expect={"status": deployment.status},
            error=f"Cancelled by {user.get_username()}.",
            record=False,
            actor=user,
        )
    audit(user, "deployment.cancel", deployment, source_ip=source_ip)
    return deployment


def _reship(built: Deployment, **fields: Any) -> Deployment:
    """Deploy what `built` shipped (same repository, ref, commit and digest) again."""
    return _create(repository=built.repository, ref=built.ref, reuse_of=built, **fields)


def _check_expected(shipping: Deployment, expected_digest: str) -> None:
    """The confirmation named a digest: refuse if something else would ship now."""
    if expected_digest and expected_digest != shipping.image_digest:
        raise DeployRefused(
            f"What would ship changed since you confirmed (now {shipping.short_sha}, {shipping.short_digest}); "
            "look again."
        )


@transaction.atomic
def deployment_rollback(
    *,
    user: Any,
    environment: Environment,
    source_ip: str | None = None,
    break_glass_reason: str = "",
    repository: Repository | None = None,
    expected_digest: str = "",
) -> Deployment:
    """Redeploy the previous successful digest (of `repository`, when given) without building again."""
    _check_can_deploy(user=user, environment=environment, break_glass_reason=break_glass_reason)
    current, previous = rollback_candidate(environment, repository)
    if current is None:
        raise DeployRefused(f"{environment} has no successful deployment to roll back from.")
    if previous is None:
        raise DeployRefused(f"{environment} has no earlier successful release to roll back to.")
    _check_expected(previous, expected_digest)
    return _reship(
        previous,
        user=user,
        environment=environment,
        trigger=Trigger.ROLLBACK,
        source_ip=source_ip,
        break_glass_reason=break_glass_reason,
        rollback_of=current,
    )


@transaction.atomic
def deployment_promote(
    *,
    user: Any,
    source: Environment,
    target: Environment,
    source_ip: str | None = None,
    break_glass_reason: str = "",
    repository: Repository | None = None,
    expected_digest: str = "",
) -> Deployment:
    """Ship exactly the digest that `source` runs (of `repository`, when given) to `target`."""
    if source.order >= target.order:
        raise DeployRefused(f"Promotion goes forward only: {source} does not come before {target}.")
    _check_can_deploy(user=user, environment=target, break_glass_reason=break_glass_reason)
    running = last_successful(source, repository=repository)
    if running is None:
        raise DeployRefused(f"{source} runs nothing that Shipmate deployed.")
    _check_expected(running, expected_digest)
    return _reship(
        running,
        user=user,
        environment=target,
        trigger=Trigger.PROMOTION,
        source_ip=source_ip,
        break_glass_reason=break_glass_reason,
    )
