"""Types shared by the pipeline stages and targets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

# One log line, already meant for the user (the caller masks secrets).
LogFn = Callable[[str], None]
# Returns True once the user asked to cancel; long steps poll it.
StopFn = Callable[[], bool]


class StageError(Exception):
    """A stage failed; the message is shown to the user as is."""


class Cancelled(Exception):
    """The user cancelled the deployment while a step ran."""


class RolloutFailed(StageError):
    """The target did not become healthy with the new release."""


class TargetError(StageError):
    """The target cannot be reached or is misconfigured (checked before changing anything)."""


def never_stop() -> bool:
    return False


@dataclass(frozen=True)
class Release:
    """What a target runs: an image by digest plus the environment's variables."""

    image: str  # registry/name@sha256:…, never a tag
    variables: dict[str, str] = field(default_factory=dict)
    secret_names: frozenset[str] = frozenset()
    # Recorded on the target (Kubernetes annotations, Docker labels).
    annotations: dict[str, str] = field(default_factory=dict)
    # A keyed hash of the configuration, safe to show on the target; set by the caller.
    config_hash: str = ""


class Target(Protocol):
    """A place a release runs. One instance serves one rollout."""

    def check(self) -> str:
        """Test the connection and settings; return a short description or raise TargetError."""

    def apply(self, release: Release, *, log: LogFn) -> None:
        """Start rolling out `release`; raise TargetError if nothing could change."""

    def wait(self, *, log: LogFn, should_stop: StopFn) -> None:
        """Block until the release is healthy; raise RolloutFailed or Cancelled."""

    def undo(self, previous: Release | None, *, log: LogFn) -> None:
        """Restore what ran before `apply` (the last good release); raise RolloutFailed if that fails too."""

    def current(self) -> str | None:
        """The image reference the target runs now, or None when nothing runs."""

    def close(self) -> None:
        """Release the connection to the engine or cluster."""
