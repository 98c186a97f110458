from .audit import AuditEvent
from .deployment import Approval, Deployment, LogLine, Phase, Stage, StageStatus, Status, Trigger
from .environment import Environment, FreezeWindow, TargetKind, Variable
from .placement import Placement, PlacementVariable
from .repository import Repository

__all__ = [
    "Approval",
    "AuditEvent",
    "Deployment",
    "Environment",
    "FreezeWindow",
    "LogLine",
    "Placement",
    "PlacementVariable",
    "Repository",
    "Stage",
    "Phase",
    "StageStatus",
    "Status",
    "TargetKind",
    "Trigger",
    "Variable",
]
