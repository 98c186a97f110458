from .audit import AuditEvent
from .deployment import Approval, Deployment, LogLine, Stage, StageStatus, Status, Trigger
from .environment import Environment, FreezeWindow, TargetKind, Variable
from .placement import Placement
from .repository import Repository

__all__ = [
    "Approval",
    "AuditEvent",
    "Deployment",
    "Environment",
    "FreezeWindow",
    "LogLine",
    "Placement",
    "Repository",
    "Stage",
    "StageStatus",
    "Status",
    "TargetKind",
    "Trigger",
    "Variable",
]
