from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from .. import permissions
from ..models import Approval, Deployment, Status
from ..plans import placement_of
from ..selectors.runs import approvals_needed, valid_approvals
from .audit import audit
from .deployments import DeployRefused
from .lifecycle import transition


def _decide(
    *, user: Any, deployment: Deployment, decision: str, comment: str, source_ip: str | None
) -> Approval:
    deployment = Deployment.objects.select_for_update().select_related("environment").get(pk=deployment.pk)
    if deployment.status != Status.AWAITING_APPROVAL:
        raise DeployRefused("This deployment is not waiting for approval.")
    own = deployment.requested_by_id == user.pk
    if own and (deployment.break_glass_reason or not deployment.environment.allow_self_approval):
        raise DeployRefused("You cannot approve your own deployment.")
    if not permissions.can_approve(user, deployment):
        raise DeployRefused(f"You may not approve deployments to {deployment.environment}.")
    env = deployment.environment
    approval = Approval.objects.create(
        deployment=deployment,
        approver=user,
        decision=decision,
        comment=comment.strip(),
        commit_sha=deployment.commit_sha,
        image_digest=deployment.image_digest,
        config_hash=placement_of(deployment).config_hash(),
        expires_at=timezone.now() + timedelta(minutes=env.approval_ttl_minutes),
    )
    return approval


@transaction.atomic
def deployment_approve(
    *, user: Any, deployment: Deployment, comment: str = "", source_ip: str | None = None
) -> Approval:
    approval = _decide(
        user=user,
        deployment=deployment,
        decision=Approval.Decision.APPROVED,
        comment=comment,
        source_ip=source_ip,
    )
    deployment = approval.deployment
    audit(user, "deployment.approve", deployment, source_ip=source_ip, comment=approval.comment)
    if len(valid_approvals(deployment, approval.config_hash)) >= approvals_needed(deployment):
        transition(
            deployment, Status.APPROVED, expect={"status": Status.AWAITING_APPROVAL}, record=False, actor=user
        )
    return approval


@transaction.atomic
def deployment_reject(
    *, user: Any, deployment: Deployment, comment: str = "", source_ip: str | None = None
) -> Approval:
    if not comment.strip():
        raise DeployRefused("Say why you reject it.")
    approval = _decide(
        user=user,
        deployment=deployment,
        decision=Approval.Decision.REJECTED,
        comment=comment,
        source_ip=source_ip,
    )
    deployment = approval.deployment
    transition(
        deployment,
        Status.REJECTED,
        expect={"status": Status.AWAITING_APPROVAL},
        error=f"Rejected by {user.get_username()}: {approval.comment}",
        record=False,
        actor=user,
    )
    audit(user, "deployment.reject", deployment, source_ip=source_ip, comment=approval.comment)
    return approval
