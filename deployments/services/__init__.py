"""Database writes. Each service is atomic and writes its audit event in the same
transaction. Names are <entity>_<action>."""

from ..selectors.runs import valid_approvals
from .approvals import deployment_approve, deployment_reject
from .audit import audit, audit_context
from .deployments import (
    DeployRefused,
    NeedsConfirmation,
    deployment_cancel,
    deployment_promote,
    deployment_request,
    deployment_rollback,
)
from .environments import environment_lock, environment_unlock, placement_lock, placement_unlock

__all__ = [
    "DeployRefused",
    "NeedsConfirmation",
    "audit",
    "audit_context",
    "deployment_approve",
    "deployment_cancel",
    "deployment_promote",
    "deployment_reject",
    "deployment_request",
    "deployment_rollback",
    "environment_lock",
    "environment_unlock",
    "placement_lock",
    "placement_unlock",
    "valid_approvals",
]
