"""A small Kubernetes cluster emulator for rollout tests, built on kmock.

kmock serves the Kubernetes API over real HTTP but is only an object store. This module adds
what a rollout needs: `metadata.generation` bumps on spec changes, uid/resourceVersion,
Deployment defaults, labelSelector filtering, pod logs, and an asyncio "controller" that writes
Deployment status and Pods over time according to a per-image scenario.

The code under test is synchronous, so the server and the controller run in their own thread
and event loop; test code talks to them through thread-safe helpers on `FakeCluster`.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import itertools
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import jsonpointer
import kmock
from kmock._internal.dicts import patch_dict  # kmock's own patch semantics (JSON patch or dict merge)

DEPLOYMENTS = kmock.resource("apps", "v1", "deployments")
PODS = kmock.resource("", "v1", "pods")
CONFIGMAPS = kmock.resource("", "v1", "configmaps")
SECRETS = kmock.resource("", "v1", "secrets")
KINDS = {DEPLOYMENTS: "Deployment", PODS: "Pod", CONFIGMAPS: "ConfigMap", SECRETS: "Secret"}

# Scenarios the controller plays for a new Deployment generation (chosen by container image).
SCENARIOS = ("success", "slow", "deadline", "crashloop", "imagepull", "restarts", "stale")
CRASH_LOG = "starting demo app\nconnecting to database at db:5432\npanic: connection refused\n"

Obj = dict[str, Any]


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _selector_matches(labels: dict[str, str], selector: str) -> bool:
    # Only equality terms ("a=b", "a==b"), which is all the code under test sends.
    for term in filter(None, (t.strip() for t in selector.split(","))):
        key, _, value = term.replace("==", "=").partition("=")
        if labels.get(key.strip()) != value.strip():
            return False
    return True


@attrs.define(kw_only=True)
class ClusterEmulator(kmock.KubernetesEmulator):
    """kmock's emulator plus the API-server behaviour rollouts depend on."""

    # (namespace, pod, container) -> log text; "previous" logs of crashed containers.
    pod_logs: dict[tuple[str, str, str], str] = attrs.field(factory=dict)
    # (method, path) of every PATCH, to prove that a refused apply changed nothing.
    patches: list[tuple[str, str]] = attrs.field(factory=list)
    counter: Iterator[int] = attrs.field(factory=lambda: itertools.count(1000))

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # The kubernetes client asks for "/version/" with a slash; kmock only serves "/version".
        self.fallback["get /version/"] << self._serve_server_version
        # Declared up front, so listing pods in an empty namespace is an empty list, not a 404.
        for resource, kind in KINDS.items():
            self.resources[resource] = kmock.ResourceInfo(kind=kind, namespaced=True)

    def next_version(self) -> str:
        return str(next(self.counter))

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if request.resource is not None:
            if request.action == kmock.action.FETCH and request.subresource == "log":
                return self._serve_log(request)
            if request.action == kmock.action.CREATE and isinstance(request.data, dict):
                object.__setattr__(request, "data", self._stamp_new(request))
            elif request.action == kmock.action.UPDATE and request.name is not None:
                self.patches.append((request.method, request.url.path))
                stamped = self._stamp_patch(request)
                if stamped is not None:
                    object.__setattr__(request, "data", stamped)
        return await super()._handle(request)

    def _stamp_new(self, request: kmock.Request) -> Obj:
        obj = copy.deepcopy(request.data)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", request.namespace)
        meta.update(uid=str(uuid.uuid4()), resourceVersion=self.next_version(), generation=1)
        meta.setdefault("creationTimestamp", _now())
        if request.resource == DEPLOYMENTS:
            spec = obj.setdefault("spec", {})
            spec.setdefault("replicas", 1)
            spec.setdefault("progressDeadlineSeconds", 600)
        return obj

    def _stamp_patch(self, request: kmock.Request) -> Any | None:
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return None  # kmock answers 404 itself
        old = copy.deepcopy(self.objects[key].raw)
        try:
            new = patch_dict(old, request.data)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, ValueError, TypeError) as exc:
            # A real API server answers 422 when a JSON patch does not apply (e.g. a failed "test").
            raise kmock.KubernetesError(status=422, reason="Invalid", message=str(exc)) from exc
        stamp = {"resourceVersion": self.next_version()}
        if request.subresource is None and new.get("spec") != old.get("spec"):
            stamp["generation"] = int(old.get("metadata", {}).get("generation") or 1) + 1
        if isinstance(request.data, list):
            return request.data + [
                {"op": "add", "path": f"/metadata/{k}", "value": v} for k, v in stamp.items()
            ]
        return patch_dict(request.data, {"metadata": stamp})

    async def _serve_list(self, request: kmock.Request) -> Any:
        result = await super()._serve_list(request)
        selector = request.params.get("labelSelector")
        if selector:
            result["items"] = [
                item
                for item in result["items"]
                if _selector_matches(item.get("metadata", {}).get("labels") or {}, selector)
            ]
        result["metadata"] = {"resourceVersion": self.next_version()}
        return result

    def _serve_log(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        container = request.params.get("container", "")
        previous = request.params.get("previous") == "true"
        text = (
            self.pod_logs.get((request.namespace or "", request.name or "", container)) if previous else None
        )
        if text is None:
            # What a real API server says for a container that never ran.
            message = f'container "{container}" in pod "{request.name}" is waiting to start'
            raise kmock.KubernetesError(status=400, reason="BadRequest", message=message)
        tail = request.params.get("tailLines")
        lines = text.splitlines(keepends=True)
        return aiohttp.web.Response(text="".join(lines[-int(tail) :] if tail else lines))


class Controller:
    """Plays a Deployment controller plus kubelet: status and Pods per scenario.

    Each new `metadata.generation` of a Deployment starts its scenario, chosen by the image of
    any of its containers (`scenarios[image]`), else `default`. A new generation cancels the
    previous one's task, so a rollback takes over from a crash loop as on a real cluster.
    """

    def __init__(self, cluster: ClusterEmulator, *, tick: float = 0.05) -> None:
        self.cluster = cluster
        self.tick = tick
        self.scenarios: dict[str, str] = {}
        self.default = "success"
        self.step = 0.6  # seconds per step of the "slow" scenario
        self.seen: dict[tuple[str, str], int] = {}
        self.tasks: dict[tuple[str, str], asyncio.Task[None]] = {}

    async def run(self) -> None:
        while True:
            for (resource, namespace, name), obj in list(self.cluster.objects.items()):
                if resource != DEPLOYMENTS or obj.deleted or obj.get("spec", {}).get("paused"):
                    continue
                generation = obj["metadata"].get("generation", 1)
                key = (namespace, name)
                if self.seen.get(key) != generation:
                    self.seen[key] = generation
                    if key in self.tasks:
                        self.tasks[key].cancel()
                    self.tasks[key] = asyncio.create_task(self._rollout(key, generation))
            await asyncio.sleep(self.tick)

    def scenario_for(self, deployment: Obj) -> str:
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            if container["image"] in self.scenarios:
                return self.scenarios[container["image"]]
        return self.default

    # Writers (run in the loop thread, so no locking is needed beyond kmock's own).

    def _deployment(self, key: tuple[str, str]) -> Obj:
        return copy.deepcopy(self.cluster.objects[DEPLOYMENTS, key[0], key[1]].raw)

    def write_status(self, key: tuple[str, str], generation: int, **status: Any) -> None:
        obj = self.cluster.objects[DEPLOYMENTS, key[0], key[1]]
        conditions = status.pop("conditions", None) or [
            _condition("Available", "True", "MinimumReplicasAvailable"),
            _condition("Progressing", "True", "ReplicaSetUpdated"),
        ]
        # Whole-key assignments: nested views of kmock objects are copies.
        obj["status"] = {"observedGeneration": generation, "conditions": conditions, **status}
        obj["metadata"] = {**obj.raw["metadata"], "resourceVersion": self.cluster.next_version()}

    def write_pods(
        self, key: tuple[str, str], generation: int, template: Obj, count: int, state: Callable[[str], Obj]
    ) -> None:
        """Replace the Deployment's pods of `generation` with `count` pods in `state`.

        `template` is the pod template of that generation, captured when its rollout started:
        pods never follow later template changes (a rollback patch must not rewrite them).
        """
        namespace, name = key
        for (resource, ns, pod_name), obj in list(self.cluster.objects.items()):
            if resource == PODS and ns == namespace and pod_name.startswith(f"{name}-g{generation}-"):
                if not obj.deleted:
                    obj.delete()
        for index in range(count):
            pod_name = f"{name}-g{generation}-{index}"
            statuses = [{"name": c["name"], "image": c["image"], "imageID": "", **state(c["name"])}
                        for c in template["spec"]["containers"]]  # fmt: skip
            ready = all(s["ready"] for s in statuses)
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": pod_name,
                    "namespace": namespace,
                    "uid": str(uuid.uuid4()),
                    "resourceVersion": self.cluster.next_version(),
                    "labels": {
                        **template["metadata"].get("labels", {}),
                        "pod-template-hash": f"g{generation}",
                    },
                },
                "spec": copy.deepcopy(template["spec"]),
                "status": {"phase": "Running" if ready else "Pending", "containerStatuses": statuses},
            }
            self.cluster.objects[PODS, namespace, pod_name] = pod

    def remove_old_pods(self, key: tuple[str, str], generation: int) -> None:
        namespace, name = key
        for (resource, ns, pod_name), obj in list(self.cluster.objects.items()):
            if resource == PODS and ns == namespace and pod_name.startswith(f"{name}-g"):
                if not pod_name.startswith(f"{name}-g{generation}-") and not obj.deleted:
                    obj.delete()

    # Scenarios.

    async def _rollout(self, key: tuple[str, str], generation: int) -> None:
        deployment = self._deployment(key)
        scenario = self.scenario_for(deployment)
        replicas = deployment["spec"].get("replicas", 1)
        template = deployment["spec"]["template"]
        if scenario == "stale":
            return  # the controller never observes this generation
        await asyncio.sleep(0.1)
        old = replicas  # old pods keep serving until new ones are available
        if scenario == "success":
            self.finish(key, generation, template, replicas)
        elif scenario == "slow":
            self.write_status(key, generation, replicas=old, updatedReplicas=0, availableReplicas=old)
            for done in range(1, replicas + 1):
                await asyncio.sleep(self.step)
                self.write_pods(key, generation, template, done, running)
                self.write_status(
                    key, generation, replicas=old + done, updatedReplicas=done,
                    availableReplicas=old + done - 1, readyReplicas=old + done - 1,
                )  # fmt: skip
            await asyncio.sleep(self.step)
            self.remove_old_pods(key, generation)
            self.write_status(
                key, generation, replicas=replicas, updatedReplicas=replicas,
                availableReplicas=replicas - 1, readyReplicas=replicas - 1,
            )  # fmt: skip
            await asyncio.sleep(self.step)
            self.finish(key, generation, template, replicas)
        elif scenario == "deadline":
            self.write_status(key, generation, replicas=old + 1, updatedReplicas=1, availableReplicas=old)
            self.write_pods(key, generation, template, 1, waiting("ContainerCreating"))
            await asyncio.sleep(1.0)
            conditions = [
                _condition("Available", "True", "MinimumReplicasAvailable"),
                _condition("Progressing", "False", "ProgressDeadlineExceeded"),
            ]
            self.write_status(
                key,
                generation,
                replicas=old + 1,
                updatedReplicas=1,
                availableReplicas=old,
                conditions=conditions,
            )
        elif scenario in ("crashloop", "restarts", "imagepull"):
            self.write_status(key, generation, replicas=old + 1, updatedReplicas=1, availableReplicas=old)
            self.write_pods(key, generation, template, 1, waiting("ContainerCreating"))
            await asyncio.sleep(0.2)
            if scenario == "imagepull":
                self.write_pods(key, generation, template, 1, waiting("ImagePullBackOff"))
                return
            pod = f"{key[1]}-g{generation}-0"
            for container in template["spec"]["containers"]:
                self.cluster.pod_logs[key[0], pod, container["name"]] = CRASH_LOG
            for restarts in itertools.count(1):
                if scenario == "crashloop":
                    self.write_pods(key, generation, template, 1, waiting("CrashLoopBackOff", restarts))
                else:  # keeps restarting but is caught running each time we look
                    self.write_pods(key, generation, template, 1, running_restarted(restarts))
                await asyncio.sleep(0.3)

    def finish(self, key: tuple[str, str], generation: int, template: Obj, replicas: int) -> None:
        self.write_pods(key, generation, template, replicas, running)
        self.remove_old_pods(key, generation)
        conditions = [
            _condition("Available", "True", "MinimumReplicasAvailable"),
            _condition("Progressing", "True", "NewReplicaSetAvailable"),
        ]
        self.write_status(
            key, generation, replicas=replicas, updatedReplicas=replicas, readyReplicas=replicas,
            availableReplicas=replicas, conditions=conditions,
        )  # fmt: skip


def _condition(type_: str, status: str, reason: str) -> Obj:
    return {"type": type_, "status": status, "reason": reason, "lastUpdateTime": _now(), "message": reason}


def running(_: str) -> Obj:
    return {"ready": True, "started": True, "restartCount": 0, "state": {"running": {"startedAt": _now()}}}


def running_restarted(restarts: int) -> Callable[[str], Obj]:
    def state(_: str) -> Obj:
        return {**running(_), "restartCount": restarts}

    return state


def waiting(reason: str, restarts: int = 0) -> Callable[[str], Obj]:
    def state(_: str) -> Obj:
        last = {"terminated": {"exitCode": 1, "reason": "Error"}} if restarts else {}
        return {
            "ready": False,
            "started": False,
            "restartCount": restarts,
            "state": {"waiting": {"reason": reason}},
            "lastState": last,
        }

    return state


class FakeCluster:
    """The running server + controller, driven from synchronous test code."""

    def __init__(self) -> None:
        self.emulator = ClusterEmulator()
        self.controller = Controller(self.emulator)
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kmock-cluster", daemon=True)

    @classmethod
    @contextmanager
    def running(cls) -> Iterator[FakeCluster]:
        cluster = cls()
        cluster._thread.start()
        if not cluster._ready.wait(10) or cluster._error:
            raise RuntimeError(f"kmock server did not start: {cluster._error!r}")
        try:
            yield cluster
        finally:
            cluster.loop.call_soon_threadsafe(cluster._stop.set)  # type: ignore[union-attr]
            cluster._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as exc:  # surfaced by running()
            self._error = exc
            self._ready.set()
        finally:
            self.loop.close()

    async def _serve(self) -> None:
        # One access-log line per poll would bury the interesting output of failing tests.
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
        self._stop = asyncio.Event()
        async with self.emulator, kmock.Server(self.emulator) as server:
            self.port = server.port
            controller = asyncio.create_task(self.controller.run())
            self._ready.set()
            await self._stop.wait()
            controller.cancel()
            for task in self.controller.tasks.values():
                task.cancel()

    # Thread-safe access for tests.

    def call(self, fn: Callable[[], Any]) -> Any:
        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> str:
        return (
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: kmock\n  cluster:\n    server: {self.url}\n"
            "users:\n- name: tester\n  user: {}\n"
            "contexts:\n- name: kmock\n  context:\n    cluster: kmock\n    user: tester\n"
            "current-context: kmock\n"
        )

    def get(self, resource: kmock.resource, namespace: str, name: str) -> Obj | None:
        def read() -> Obj | None:
            key = (resource, namespace, name)
            if key not in self.emulator.objects or self.emulator.objects[key].deleted:
                return None
            return copy.deepcopy(self.emulator.objects[key].raw)

        return self.call(read)

    def deployment(self, namespace: str, name: str) -> Obj:
        found = self.get(DEPLOYMENTS, namespace, name)
        assert found is not None, f"no Deployment {namespace}/{name}"
        return found

    def patch_count(self, namespace: str, name: str) -> int:
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
        return self.call(lambda: sum(1 for _, p in self.emulator.patches if p == path))

    def set_scenario(self, image: str, scenario: str) -> None:
        assert scenario in SCENARIOS, scenario
        self.call(lambda: self.controller.scenarios.__setitem__(image, scenario))

    def seed_deployment(
        self,
        namespace: str,
        name: str,
        *,
        containers: dict[str, str],
        replicas: int = 1,
        paused: bool = False,
    ) -> Obj:
        """A Deployment already rolled out at generation 1, with its pods running."""
        labels = {"app": name}
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": str(uuid.uuid4()),
                "generation": 1,
                "resourceVersion": "1",
                "creationTimestamp": _now(),
                "labels": labels,
            },
            "spec": {
                "replicas": replicas,
                "paused": paused,
                "progressDeadlineSeconds": 600,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": c, "image": image} for c, image in containers.items()]},
                },
            },
        }

        def seed() -> None:
            key = (namespace, name)
            self.emulator.objects[DEPLOYMENTS, namespace, name] = deployment
            self.controller.seen[key] = 1  # already rolled out: nothing for the controller to do
            self.controller.finish(key, 1, deployment["spec"]["template"], replicas)

        self.call(seed)
        return self.deployment(namespace, name)
