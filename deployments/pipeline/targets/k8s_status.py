"""Pure rollout-status rules for a Kubernetes Deployment, on plain API dicts.

`rollout_status` follows kubectl's DeploymentStatusViewer (`kubectl rollout status`),
so Shipmate agrees with what operators see in their terminal. `find_pod_failure` is
our addition: it spots pods that cannot become ready long before the progress
deadline would say so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..base import RolloutFailed

# Waiting reasons after which a container does not recover by itself.
FATAL_WAITING_REASONS = frozenset(
    {"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError", "InvalidImageName"}
)

Obj = Mapping[str, Any]


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def rollout_status(deployment: Obj, *, min_generation: int = 0) -> tuple[bool, str]:
    """Return (done, message) for one observation of a Deployment.

    `min_generation` is the generation our own patch returned: a status observed for
    an older spec must not count, even if the Deployment we read looks older still
    (a lagging API cache). Raises RolloutFailed when the rollout cannot finish.
    """
    meta: Obj = deployment.get("metadata") or {}
    spec: Obj = deployment.get("spec") or {}
    status: Obj = deployment.get("status") or {}
    ref = f"{meta.get('namespace', '')}/{meta.get('name', '')}"

    generation = max(_int(meta.get("generation")), min_generation)
    observed = _int(status.get("observedGeneration"))
    if observed < generation:
        return False, f"Waiting for deployment spec update to be observed (generation {generation})..."
    if spec.get("paused"):
        # kubectl would wait forever here; a paused Deployment never progresses.
        raise RolloutFailed(f"deployment {ref} is paused, so the rollout cannot progress")

    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            raise RolloutFailed(f"deployment {ref} exceeded its progress deadline")

    wanted = spec.get("replicas")
    updated = _int(status.get("updatedReplicas"))
    replicas = _int(status.get("replicas"))
    available = _int(status.get("availableReplicas"))
    # A real API server always defaults spec.replicas; kubectl skips the check when it is unset.
    if isinstance(wanted, int) and updated < wanted:
        return False, f"Waiting for rollout to finish: {updated} out of {wanted} new replicas have been updated..."
    if replicas > updated:
        return False, f"Waiting for rollout to finish: {replicas - updated} old replicas are pending termination..."
    if available < updated:
        return False, f"Waiting for rollout to finish: {available} of {updated} updated replicas are available..."
    return True, f"deployment {ref} successfully rolled out"


@dataclass(frozen=True)
class PodFailure:
    pod: str
    container: str
    reason: str
    restarts: int

    def __str__(self) -> str:
        return f"pod {self.pod} container {self.container}: {self.reason} (restarts {self.restarts})"


def _container_image(pod: Obj, container: str) -> str | None:
    for c in (pod.get("spec") or {}).get("containers") or []:
        if c.get("name") == container:
            return c.get("image")
    return None


def find_pod_failure(pods: Iterable[Obj], *, container: str, image: str, max_restarts: int) -> PodFailure | None:
    """The first pod of the new release (its `container` runs `image`) that is stuck.

    Old pods are ignored: they may crash for reasons this rollout is meant to fix.
    All containers of a new pod count, because a crashing sidecar blocks readiness too.
    """
    for pod in pods:
        if _container_image(pod, container) != image:
            continue
        name = (pod.get("metadata") or {}).get("name", "?")
        status: Obj = pod.get("status") or {}
        statuses = list(status.get("initContainerStatuses") or []) + list(status.get("containerStatuses") or [])
        for cs in statuses:
            restarts = _int(cs.get("restartCount"))
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason") or ""
            if reason in FATAL_WAITING_REASONS:
                return PodFailure(name, cs.get("name", "?"), reason, restarts)
            if restarts >= max_restarts:
                return PodFailure(name, cs.get("name", "?"), f"restarted {restarts} times", restarts)
    return None
