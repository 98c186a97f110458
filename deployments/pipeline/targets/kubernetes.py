"""Kubernetes target: point one container of a Deployment at a digest, then wait the
way `kubectl rollout status` does, and stop early when new pods cannot start."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..base import Cancelled, LogFn, Release, RolloutFailed, StageError, StopFn, TargetError, never_stop
from .k8s_client import build_api_client, describe_error
from .k8s_status import (
    CAUSE_ANNOTATION,
    HASH_ANNOTATION,
    PodFailure,
    change_cause,
    config_hash,
    containers_of,
    deployment_patch,
    find_container,
    find_pod_failure,
    rollout_status,
)
from .settings import KubernetesSettings

MANAGED_BY_KEY = "app.kubernetes.io/managed-by"
JSON_PATCH = "application/json-patch+json"
VERBS = ("read", "create", "patch")
REQUEST_TIMEOUT = (5, 30)  # (connect, read) seconds for every API call
LOG_TAIL = 20
MAX_API_ERRORS = 5  # consecutive failed polls before the rollout counts as lost
CONNECT_ERRORS = (urllib3.exceptions.HTTPError, OSError)

Obj = dict[str, Any]


class KubernetesTarget:
    """Rolls out one container of one Deployment. One instance serves one rollout."""

    def __init__(
        self,
        *,
        name: str,
        api: client.ApiClient,
        namespace: str,
        deployment: str,
        container: str,
        timeout: float = 600.0,
        max_restarts: int = 3,
        poll_interval: float = 1.0,
    ) -> None:
        self.name = name
        self.api = api
        self.namespace = namespace
        self.deployment = deployment
        self.container = container
        self.timeout = timeout
        self.max_restarts = max_restarts
        self.poll_interval = poll_interval
        self._apps = client.AppsV1Api(api)
        self._core = client.CoreV1Api(api)
        # Set by apply(): what wait() checks pods against, and the generation our patch produced.
        self.release: Release | None = None
        self.generation_before = 0
        self.generation_after = 0

    @classmethod
    def from_settings(
        cls,
        *,
        name: str,
        settings: KubernetesSettings | Mapping[str, Any],
        kubeconfig: str = "",
        **_: Any,
    ) -> KubernetesTarget:
        if not isinstance(settings, KubernetesSettings):
            settings = KubernetesSettings.parse(settings)
        api = build_api_client(
            kubeconfig=kubeconfig or "",
            kubeconfig_path=settings.kubeconfig_path,
            in_cluster=settings.in_cluster,
            context=settings.context or None,
        )
        return cls(
            name=name,
            api=api,
            namespace=settings.namespace,
            deployment=settings.deployment,
            container=settings.container,
            timeout=settings.timeout,
            max_restarts=settings.max_restarts,
            poll_interval=settings.poll_interval,
        )

    def close(self) -> None:
        self.api.close()

    # Names and small helpers.

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.deployment}"

    @property
    def host(self) -> str:
        return str(self.api.configuration.host)

    @property
    def configmap_name(self) -> str:
        return f"shipmate-{self.deployment}-config"

    @property
    def secret_name(self) -> str:
        return f"shipmate-{self.deployment}-secrets"

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Obj:
        # Plain dicts instead of client models: the status rules and JSON patches work on them directly.
        response = method(*args, _preload_content=False, _request_timeout=REQUEST_TIMEOUT, **kwargs)
        return json.loads(response.data)

    def _unreachable(self, exc: BaseException) -> TargetError:
        return TargetError(f"cannot connect to the Kubernetes API at {self.host}: {describe_error(exc)}")

    def _read_deployment(self) -> Obj:
        try:
            return self._call(self._apps.read_namespaced_deployment, self.deployment, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise TargetError(f"Deployment {self.ref} not found") from exc
            raise TargetError(f"cannot read Deployment {self.ref}: {describe_error(exc)}") from exc
        except CONNECT_ERRORS as exc:
            raise self._unreachable(exc) from exc

    def _find_container(self, deployment: Obj) -> Obj:
        found = find_container(deployment, self.container)
        if found is None:
            names = ", ".join(c.get("name", "?") for c in containers_of(deployment)) or "none"
            raise TargetError(
                f"container {self.container!r} not found in Deployment {self.ref} (has: {names})"
            )
        return dict(found[1])

    def _precheck(self, deployment: Obj) -> Obj:
        container = self._find_container(deployment)
        if (deployment.get("spec") or {}).get("paused"):
            raise TargetError(
                f"Deployment {self.ref} is paused; resume it first "
                f"(kubectl -n {self.namespace} rollout resume deployment/{self.deployment})"
            )
        return container

    # Target protocol.

    def check(self) -> str:
        try:
            version = client.VersionApi(self.api).get_code(_request_timeout=REQUEST_TIMEOUT).git_version
        except ApiException as exc:
            raise TargetError(
                f"Kubernetes API at {self.host} refused the request: {describe_error(exc)}"
            ) from exc
        except CONNECT_ERRORS as exc:
            raise self._unreachable(exc) from exc
        container = self._precheck(self._read_deployment())
        return (
            f"Kubernetes {version} at {self.host}: deployment {self.ref}, "
            f"container {self.container}, image {container.get('image', '?')}"
        )

    def current(self) -> str | None:
        """The container's image now; None if the Deployment or the container is gone.

        An unreachable API raises TargetError: "unknown" must not read as "nothing runs".
        """
        try:
            deployment = self._call(self._apps.read_namespaced_deployment, self.deployment, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise TargetError(f"cannot read Deployment {self.ref}: {describe_error(exc)}") from exc
        except CONNECT_ERRORS as exc:
            raise self._unreachable(exc) from exc
        found = find_container(deployment, self.container)
        return found[1].get("image") if found else None

    def apply(self, release: Release, *, log: LogFn) -> None:
        if "@sha256:" not in release.image:
            raise TargetError(f"image must be a digest reference (name@sha256:…), got {release.image!r}")
        deployment = self._read_deployment()
        self._precheck(deployment)

        self._upsert_env_objects(release, log)
        patched = self._patch_deployment(deployment, release)
        self.release = release
        self.generation_before = int(deployment["metadata"].get("generation") or 0)
        self.generation_after = int(patched["metadata"].get("generation") or 0)
        if self.generation_after == self.generation_before:
            log(f"Deployment {self.ref} spec unchanged (generation {self.generation_after})")
        else:
            log(
                f"patched Deployment {self.ref}: container {self.container} → {release.image} "
                f"(generation {self.generation_before} → {self.generation_after})"
            )

    def wait(self, *, log: LogFn, should_stop: StopFn) -> None:
        deadline = time.monotonic() + self.timeout
        last_message = ""
        errors = 0
        # Start quick and back off to poll_interval: small rollouts and early crash
        # loops show within the first second, long ones need no tight loop.
        interval = min(0.1, self.poll_interval)
        while True:
            if should_stop():
                raise Cancelled(f"cancelled while waiting for Deployment {self.ref}")
            try:
                done, message, failure = self._observe()
            except ApiException as exc:
                if exc.status == 404:
                    raise RolloutFailed(f"Deployment {self.ref} disappeared during the rollout") from exc
                errors, error = errors + 1, describe_error(exc)
            except CONNECT_ERRORS as exc:
                errors, error = errors + 1, describe_error(exc)
            else:
                errors = 0
                if message != last_message:
                    log(message)
                    last_message = message
                if done:
                    return
                if failure:
                    self._log_container(failure, log)
                    raise RolloutFailed(str(failure))
            if errors >= MAX_API_ERRORS:
                raise RolloutFailed(f"lost contact with the Kubernetes API: {error}")
            now = time.monotonic()
            if now >= deadline:
                raise RolloutFailed(f"rollout did not finish within {self.timeout:g} s")
            self._sleep(min(interval, deadline - now), should_stop)
            interval = min(interval * 2, self.poll_interval)

    def undo(self, previous: Release | None, *, log: LogFn) -> None:
        if previous is None:
            log("no earlier successful release recorded; nothing to restore")
            raise RolloutFailed("rollback failed, manual action needed: no previous release")
        log(f"rolling back Deployment {self.ref} to {previous.image}")
        try:
            self.apply(previous, log=log)
            self.wait(log=log, should_stop=never_stop)
        except StageError as exc:
            raise RolloutFailed(f"rollback failed, manual action needed: {exc}") from exc
        log(f"restored Deployment {self.ref} to {previous.image}")

    # Apply steps.

    def _upsert_env_objects(self, release: Release, log: LogFn) -> None:
        plain = {k: v for k, v in release.variables.items() if k not in release.secret_names}
        secret = {
            k: base64.b64encode(v.encode()).decode()
            for k, v in release.variables.items()
            if k in release.secret_names
        }
        action = self._upsert("ConfigMap", "config_map", self.configmap_name, plain)
        log(f"{action} ConfigMap {self.namespace}/{self.configmap_name} ({len(plain)} variables)")
        action = self._upsert("Secret", "secret", self.secret_name, secret)
        log(f"{action} Secret {self.namespace}/{self.secret_name} ({len(secret)} secret variables)")

    def _upsert(self, kind: str, api_name: str, name: str, data: dict[str, str]) -> str:
        """Create or replace the data of a ConfigMap/Secret that Shipmate owns."""
        read, create, patch = (getattr(self._core, f"{verb}_namespaced_{api_name}") for verb in VERBS)
        where = f"{kind} {self.namespace}/{name}"
        labels = {MANAGED_BY_KEY: "shipmate"}
        try:
            try:
                current = self._call(read, name, self.namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                body: Obj = {
                    "apiVersion": "v1",
                    "kind": kind,
                    "metadata": {"name": name, "namespace": self.namespace, "labels": labels},
                    "data": data,
                }
                if kind == "Secret":
                    body["type"] = "Opaque"
                self._call(create, self.namespace, body)
                return "created"
            current_labels = (current.get("metadata") or {}).get("labels") or {}
            if current_labels.get(MANAGED_BY_KEY) != "shipmate":
                raise TargetError(
                    f"{where} exists but is not labelled {MANAGED_BY_KEY}=shipmate; not touching it"
                )
            # Replace the whole data map, so removed variables disappear (a merge would keep them).
            ops = [{"op": "add", "path": "/data", "value": data}]
            self._call(patch, name, self.namespace, ops, _content_type=JSON_PATCH)
            return "updated"
        except ApiException as exc:
            raise TargetError(f"cannot write {where}: {describe_error(exc)}") from exc
        except CONNECT_ERRORS as exc:
            raise self._unreachable(exc) from exc

    def _patch_deployment(self, deployment: Obj, release: Release) -> Obj:
        for attempt in range(2):
            ops = deployment_patch(
                deployment,
                container=self.container,
                image=release.image,
                env_refs={"configMapRef": self.configmap_name, "secretRef": self.secret_name},
                template_annotations={HASH_ANNOTATION: release.config_hash or config_hash(release.variables)},
                annotations={CAUSE_ANNOTATION: change_cause(release.annotations)},
            )
            try:
                return self._call(
                    self._apps.patch_namespaced_deployment,
                    self.deployment,
                    self.namespace,
                    ops,
                    _content_type=JSON_PATCH,
                )
            except ApiException as exc:
                # 422: our `test` op failed because someone edited the containers; retry once on fresh data.
                if exc.status in (409, 422) and attempt == 0:
                    deployment = self._read_deployment()
                    self._precheck(deployment)
                    continue
                raise TargetError(f"cannot patch Deployment {self.ref}: {describe_error(exc)}") from exc
            except CONNECT_ERRORS as exc:
                raise self._unreachable(exc) from exc
        raise AssertionError("unreachable")

    # Wait steps.

    def _observe(self) -> tuple[bool, str, PodFailure | None]:
        """One poll: kubectl's verdict, plus a stuck pod of the new release if there is one."""
        deployment = self._call(self._apps.read_namespaced_deployment, self.deployment, self.namespace)
        done, message = rollout_status(deployment, min_generation=self.generation_after)
        if done or self.release is None:
            return done, message, None
        return False, message, self._find_failure(deployment, self.release.image)

    def _find_failure(self, deployment: Obj, image: str) -> PodFailure | None:
        labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        if not labels:
            return None  # never list a whole namespace; matchExpressions-only selectors skip the fast path
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        pods = self._call(self._core.list_namespaced_pod, self.namespace, label_selector=selector)
        return find_pod_failure(
            pods.get("items") or [], container=self.container, image=image, max_restarts=self.max_restarts
        )

    def _log_container(self, failure: PodFailure, log: LogFn) -> None:
        error: BaseException | None = None
        for previous in (True, False):
            try:
                text = self._core.read_namespaced_pod_log(
                    failure.pod,
                    self.namespace,
                    container=failure.container,
                    tail_lines=LOG_TAIL,
                    previous=previous,
                    _request_timeout=REQUEST_TIMEOUT,
                )
            except (ApiException, *CONNECT_ERRORS) as exc:
                error = exc
                continue
            lines = str(text or "").splitlines()[-LOG_TAIL:]
            if lines:
                which = "previous" if previous else "current"
                log(
                    f"last {len(lines)} log lines of pod {failure.pod} container {failure.container} ({which}):"
                )
                for line in lines:
                    log(f"  {line}")
                return
        log(f"(container log unavailable: {describe_error(error) if error else 'empty'})")

    def _sleep(self, seconds: float, should_stop: StopFn) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if should_stop():
                raise Cancelled(f"cancelled while waiting for Deployment {self.ref}")
            time.sleep(min(left, 0.1))
