"""The pure rollout rules: kubectl's DeploymentStatusViewer table and the pod fail-fast check."""

from __future__ import annotations

from typing import Any

import jsonpatch
import pytest

from deployments.pipeline.base import RolloutFailed
from deployments.pipeline.targets.k8s_status import deployment_patch, find_pod_failure, rollout_status

NEW = "reg/app@sha256:" + "b" * 64
OLD = "reg/app@sha256:" + "a" * 64


def deployment(
    *,
    generation: int = 2,
    observed: int = 2,
    replicas: int | None = 3,
    status_replicas: int = 3,
    updated: int = 3,
    available: int = 3,
    progressing_reason: str = "NewReplicaSetAvailable",
    paused: bool = False,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"paused": paused}
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "metadata": {"name": "web", "namespace": "prod", "generation": generation},
        "spec": spec,
        "status": {
            "observedGeneration": observed,
            "replicas": status_replicas,
            "updatedReplicas": updated,
            "availableReplicas": available,
            "conditions": [{"type": "Progressing", "status": "True", "reason": progressing_reason}],
        },
    }


@pytest.mark.parametrize(
    ("fields", "done", "message"),
    [
        ({}, True, "deployment prod/web successfully rolled out"),
        ({"observed": 1}, False, "Waiting for deployment spec update to be observed (generation 2)..."),
        (
            {"updated": 1},
            False,
            "Waiting for rollout to finish: 1 out of 3 new replicas have been updated...",
        ),
        (
            {"status_replicas": 4},
            False,
            "Waiting for rollout to finish: 1 old replicas are pending termination...",
        ),
        ({"available": 2}, False, "Waiting for rollout to finish: 2 of 3 updated replicas are available..."),
        # Without spec.replicas kubectl skips the "updated" rule; the others still apply.
        (
            {"replicas": None, "updated": 1, "status_replicas": 1, "available": 1},
            True,
            "deployment prod/web successfully rolled out",
        ),
        ({"observed": 3}, True, "deployment prod/web successfully rolled out"),
    ],
)
def test_rollout_status_follows_kubectl_rules(fields: dict[str, Any], done: bool, message: str) -> None:
    assert rollout_status(deployment(**fields)) == (done, message)


def test_complete_looking_status_of_an_older_generation_is_not_done() -> None:
    stale = deployment(generation=1, observed=1)
    # Our patch returned generation 2; a lagging read still showing generation 1 must not count.
    assert rollout_status(stale, min_generation=2) == (
        False,
        "Waiting for deployment spec update to be observed (generation 2)...",
    )


def test_progress_deadline_exceeded_fails_the_rollout() -> None:
    with pytest.raises(RolloutFailed, match="deployment prod/web exceeded its progress deadline"):
        rollout_status(deployment(updated=1, progressing_reason="ProgressDeadlineExceeded"))


def test_progress_deadline_of_an_unobserved_generation_is_ignored() -> None:
    old = deployment(observed=1, progressing_reason="ProgressDeadlineExceeded")
    assert rollout_status(old)[0] is False


def test_paused_deployment_cannot_finish() -> None:
    with pytest.raises(RolloutFailed, match="paused"):
        rollout_status(deployment(updated=1, paused=True))


def pod(image: str = NEW, *, reason: str = "", restarts: int = 0, init: bool = False, name: str = "web-1"):
    state = {"waiting": {"reason": reason}} if reason else {"running": {}}
    statuses = [{"name": "app", "restartCount": restarts, "state": state}]
    key = "initContainerStatuses" if init else "containerStatuses"
    return {
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": image}]},
        "status": {key: statuses},
    }


@pytest.mark.parametrize(
    "reason",
    [
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "CreateContainerConfigError",
        "InvalidImageName",
    ],
)
def test_fatal_waiting_reason_of_a_new_pod_is_a_failure(reason: str) -> None:
    failure = find_pod_failure([pod(reason=reason, restarts=2)], container="app", image=NEW, max_restarts=3)
    assert str(failure) == f"pod web-1 container app: {reason} (restarts 2)"


def test_pods_of_the_old_release_are_ignored() -> None:
    pods = [pod(OLD, reason="CrashLoopBackOff", restarts=9)]
    assert find_pod_failure(pods, container="app", image=NEW, max_restarts=3) is None


def test_starting_container_is_not_a_failure() -> None:
    pods = [pod(reason="ContainerCreating"), pod(restarts=2)]
    assert find_pod_failure(pods, container="app", image=NEW, max_restarts=3) is None


def test_restart_count_reaching_max_restarts_is_a_failure() -> None:
    failure = find_pod_failure([pod(restarts=3)], container="app", image=NEW, max_restarts=3)
    assert str(failure) == "pod web-1 container app: restarted 3 times (restarts 3)"


def test_failing_init_container_is_a_failure() -> None:
    failure = find_pod_failure(
        [pod(reason="CrashLoopBackOff", init=True)], container="app", image=NEW, max_restarts=3
    )
    assert failure is not None and failure.reason == "CrashLoopBackOff"


def test_deployment_patch_targets_the_named_container_and_keeps_existing_env_refs() -> None:
    before = {
        "metadata": {"name": "web", "annotations": {"team": "shop"}},
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "proxy", "image": OLD},
                        {"name": "app", "image": OLD, "envFrom": [{"configMapRef": {"name": "cfg"}}]},
                    ]
                },
            }
        },
    }
    ops = deployment_patch(
        before,
        container="app",
        image=NEW,
        env_refs={"configMapRef": "cfg", "secretRef": "sec"},
        template_annotations={"shipmate.io/config-hash": "abc"},
        annotations={"kubernetes.io/change-cause": "why"},
    )
    after = jsonpatch.apply_patch(before, ops)

    assert ops[0] == {"op": "test", "path": "/spec/template/spec/containers/1/name", "value": "app"}
    assert after["spec"]["template"]["spec"]["containers"] == [
        {"name": "proxy", "image": OLD},
        {
            "name": "app",
            "image": NEW,
            "envFrom": [{"configMapRef": {"name": "cfg"}}, {"secretRef": {"name": "sec"}}],
        },
    ]
    assert after["spec"]["template"]["metadata"]["annotations"] == {"shipmate.io/config-hash": "abc"}
    assert after["metadata"]["annotations"] == {"team": "shop", "kubernetes.io/change-cause": "why"}


def test_deployment_patch_fails_its_test_op_if_the_containers_moved() -> None:
    deployment = {
        "metadata": {},
        "spec": {"template": {"metadata": {}, "spec": {"containers": [{"name": "app", "image": OLD}]}}},
    }
    ops = deployment_patch(
        deployment, container="app", image=NEW, env_refs={}, template_annotations={}, annotations={}
    )
    deployment["spec"]["template"]["spec"]["containers"].insert(0, {"name": "sidecar", "image": OLD})
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(deployment, ops)
