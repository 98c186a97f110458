"""The pure logic of the Kubernetes target, on plain API dicts: rollout-status rules and
the JSON patch that points a Deployment's container at a release.

`rollout_status` follows kubectl's DeploymentStatusViewer (`kubectl rollout status`),
so Shipmate agrees with what operators see in their terminal. `find_pod_failure` is
our addition: it spots pods that cannot become ready long before the progress
deadline would say so.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..base import RolloutFailed

# Waiting reasons after which a container does not recover by itself.
FATAL_WAITING_REASONS = frozenset(
    {"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError", "InvalidImageName"}
)

HASH_ANNOTATION = "shipmate.io/config-hash"
CAUSE_ANNOTATION = "kubernetes.io/change-cause"

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
        return (
            False,
            f"Waiting for rollout to finish: {updated} out of {wanted} new replicas have been updated...",
        )
    if replicas > updated:
        return (
            False,
            f"Waiting for rollout to finish: {replicas - updated} old replicas are pending termination...",
        )
    if available < updated:
        return (
            False,
            f"Waiting for rollout to finish: {available} of {updated} updated replicas are available...",
        )
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


def find_pod_failure(
    pods: Iterable[Obj], *, container: str, image: str, max_restarts: int
) -> PodFailure | None:
    """The first pod of the new release (its `container` runs `image`) that is stuck.

    Old pods are ignored: they may crash for reasons this rollout is meant to fix.
    All containers of a new pod count, because a crashing sidecar blocks readiness too.
    """
    for pod in pods:
        if _container_image(pod, container) != image:
            continue
        name = (pod.get("metadata") or {}).get("name", "?")
        status: Obj = pod.get("status") or {}
        init = status.get("initContainerStatuses") or []
        for cs in [*init, *(status.get("containerStatuses") or [])]:
            restarts = _int(cs.get("restartCount"))
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason") or ""
            if reason in FATAL_WAITING_REASONS:
                return PodFailure(name, cs.get("name", "?"), reason, restarts)
            if restarts >= max_restarts:
                return PodFailure(name, cs.get("name", "?"), f"restarted {restarts} times", restarts)
    return None


def config_hash(variables: Mapping[str, str]) -> str:
    """Changes whenever any variable changes, so a config change alone rolls the pods."""
    data = json.dumps(sorted(variables.items()), separators=(",", ":"))
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def change_cause(annotations: Mapping[str, str]) -> str:
    deployment_id, commit, user = (annotations.get(key, "?") for key in ("deployment_id", "commit", "user"))
    return f"shipmate deployment #{deployment_id} commit {commit} by {user}"


def containers_of(deployment: Obj) -> list[Obj]:
    spec = deployment.get("spec") or {}
    return list(((spec.get("template") or {}).get("spec") or {}).get("containers") or [])


def find_container(deployment: Obj, name: str) -> tuple[int, Obj] | None:
    for index, container in enumerate(containers_of(deployment)):
        if container.get("name") == name:
            return index, container
    return None


def deployment_patch(
    deployment: Obj, *, container: str, image: str, env_refs: Mapping[str, str], template_annotations: Mapping[str, str],
    annotations: Mapping[str, str],
) -> list[dict[str, Any]]:  # fmt: skip
    """A JSON patch (RFC 6902) computed from a fresh GET of `deployment`.

    A strategic merge patch would be the natural choice on a real cluster, but a JSON patch
    behaves the same on every API server, test servers included. Its `test` op makes it fail
    (HTTP 422) rather than hit the wrong container if the list changed since the GET.
    `env_refs` maps an envFrom kind ("configMapRef", "secretRef") to the object name.
    """
    found = find_container(deployment, container)
    if found is None:
        raise ValueError(f"no container {container!r}")
    index, current = found
    base = f"/spec/template/spec/containers/{index}"
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": f"{base}/name", "value": container},
        {"op": "replace", "path": f"{base}/image", "value": image},
    ]
    env_from = current.get("envFrom")
    if env_from is None:
        refs = [{kind: {"name": name}} for kind, name in env_refs.items()]
        ops.append({"op": "add", "path": f"{base}/envFrom", "value": refs})
    else:
        for kind, name in env_refs.items():
            if not any((entry.get(kind) or {}).get("name") == name for entry in env_from):
                ops.append({"op": "add", "path": f"{base}/envFrom/-", "value": {kind: {"name": name}}})
    template_meta = ((deployment.get("spec") or {}).get("template") or {}).get("metadata")
    ops += _annotation_ops("/spec/template/metadata", template_meta, template_annotations)
    ops += _annotation_ops("/metadata", deployment.get("metadata"), annotations)
    return ops


def _annotation_ops(path: str, meta: Obj | None, annotations: Mapping[str, str]) -> list[dict[str, Any]]:
    # "add" on an object member replaces it, but its parent must exist.
    if meta is None:
        return [{"op": "add", "path": path, "value": {"annotations": dict(annotations)}}]
    if not meta.get("annotations"):
        return [{"op": "add", "path": f"{path}/annotations", "value": dict(annotations)}]
    return [
        {"op": "add", "path": f"{path}/annotations/{_pointer(key)}", "value": value}
        for key, value in annotations.items()
    ]


def _pointer(key: str) -> str:
    # JSON Pointer (RFC 6901) escaping, needed for annotation keys with "/".
    return key.replace("~", "~0").replace("/", "~1")
