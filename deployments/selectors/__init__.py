"""Reads: pages (pages.py), the dashboard matrix and placement page (matrix.py), and
the reads the run lifecycle shares with them (runs.py). Views use `selectors.<name>`."""

from .matrix import Cell, Column, MatrixRow, placement_matrix, placement_overview
from .pages import (
    PlacementRow,
    approval_context,
    approval_inbox,
    approval_inbox_count,
    audit_actions,
    audit_events,
    config_diff,
    deployable_choices,
    deployment_detail,
    deployment_history,
    environment_page,
    queue_position,
    visible_environments,
)
from .runs import (
    approvals_needed,
    hold_reason,
    in_line,
    last_successful,
    next_in_line,
    placement_busy,
    rollback_candidate,
    valid_approvals,
)

__all__ = [
    "Cell",
    "Column",
    "PlacementRow",
    "MatrixRow",
    "approval_context",
    "approval_inbox",
    "approval_inbox_count",
    "approvals_needed",
    "audit_actions",
    "audit_events",
    "config_diff",
    "deployable_choices",
    "deployment_detail",
    "deployment_history",
    "environment_page",
    "last_successful",
    "hold_reason",
    "in_line",
    "next_in_line",
    "placement_busy",
    "placement_matrix",
    "placement_overview",
    "queue_position",
    "rollback_candidate",
    "valid_approvals",
    "visible_environments",
]
