"""Run a release as one container on a Docker engine, health-check it, swap, undo.

The old container is stopped and kept as `<name>-previous` until the new one is
healthy, so undo is a rename and a start rather than a fresh pull.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import docker
from docker.errors import APIError, ImageNotFound, NotFound
from docker.models.containers import Container

from ..base import LogFn, Release, RolloutFailed, StopFn, TargetError, never_stop
from ..docker_client import ENGINE_ERRORS, engine_gone
from ..health import wait_http_ok
from ..outbound import OutboundError, OutboundPolicy, OutboundRefused, connect_checked, resolve_checked
from ..ports import ancestors, listeners
from .settings import NAME_RE as _NAME_RE
from .settings import DockerSettings, parse_volumes

__all__ = ["DockerTarget", "parse_volumes"]

_LABEL_UNSAFE_RE = re.compile(r"[^a-z0-9._-]+")
IMAGE_LABEL = "shipmate.image"
STOP_TIMEOUT = 10  # seconds before the engine kills a container that ignores SIGTERM
LOG_TAIL = 20
# How servers report a port they could not take (busybox httpd, nginx, Python, Node, Go).
_BIND_ERROR = re.compile(r"address (already )?in use|EADDRINUSE|bind\(\) to .* failed", re.IGNORECASE)


class HealthHostRefused(OutboundRefused, TargetError):
    """The outbound policy refuses the health host; raised before anything changes."""


class DockerTarget:
    """One container named `name` (the caller builds `shipmate-<repo>-<env>`)."""

    def __init__(
        self,
        *,
        client: docker.DockerClient,
        name: str,
        port: int,
        network_mode: str = "host",
        bind_host: str = "127.0.0.1",
        container_port: int | None = None,
        health_path: str = "/healthz",
        health_timeout: float = 30.0,
        health_host: str = "127.0.0.1",
        volumes: list[str] | None = None,
        policy: OutboundPolicy | None = None,
    ) -> None:
        if not _NAME_RE.match(name):
            raise TargetError(f"invalid container name {name!r}")
        self.client = client
        self.name = name
        self.previous_name = f"{name}-previous"
        self.port = port
        self.network_mode = network_mode
        self.bind_host = bind_host
        self.container_port = container_port or port
        self.health_path = health_path
        self.health_timeout = health_timeout
        self.health_host = health_host
        # "name:/path" (a named volume) or "/host/dir:/path" (a bind mount): user data
        # lives there, outside the container, and survives every redeploy and rollback.
        self.volumes = list(volumes or [])
        # None: the outbound policy in force when the check runs (SHIPMATE_ALLOW_INTERNAL).
        # The default health host 127.0.0.1 is loopback, so a local engine needs "loopback".
        self.policy = policy
        # Whether apply() touched the engine; undo() must not remove a container that
        # apply() never replaced.
        self._changed = False

    @classmethod
    def from_settings(
        cls, client: docker.DockerClient, name: str, settings: DockerSettings | Mapping[str, Any]
    ) -> DockerTarget:
        """Build a target from parsed settings; a plain mapping is parsed first (and may
        then name no bind mount: only the caller knows the allowed directories)."""
        if not isinstance(settings, DockerSettings):
            settings = DockerSettings.parse(settings)
        return cls(
            client=client,
            name=name,
            port=settings.port,
            network_mode=settings.network_mode,
            bind_host=settings.bind_host,
            container_port=settings.container_port,
            health_path=settings.health_path,
            health_timeout=settings.health_timeout,
            health_host=settings.health_host,
            volumes=list(settings.volumes),
        )

    @property
    def health_url(self) -> str:
        host = f"[{self.health_host}]" if ":" in self.health_host else self.health_host
        return f"http://{host}:{self.port}{self.health_path}"

    # -- Target protocol -------------------------------------------------------------------------

    def check(self) -> str:
        try:
            self.client.ping()
            version = self.client.version().get("Version", "?")
            if self.network_mode not in ("host", "bridge"):
                self.client.networks.get(self.network_mode)
            container = self._get(self.name)
        except NotFound:
            raise TargetError(f"Docker network {self.network_mode!r} does not exist") from None
        except ENGINE_ERRORS as exc:
            raise TargetError(f"cannot reach the Docker engine at {self._engine_url()}: {exc}") from None
        self._check_health_host()
        description = f"Docker {version} at {self._engine_url()}"
        if container is None:
            return f"{description}; no container {self.name} yet"
        return f"{description}; container {self.name} {container.status} image {_image_of(container)}"

    def current(self) -> str | None:
        """The image reference of the running container, or None when nothing runs."""
        container = self._get(self.name)
        if container is None or container.status != "running":
            return None
        return _image_of(container)

    def apply(self, release: Release, *, log: LogFn) -> None:
        """Swap in `release`. On error the old container is put back before TargetError is raised."""
        # Before anything changes: a health host the policy refuses could never be checked.
        self._check_health_host()
        self._ensure_image(release.image, log)
        self._retire_current(log)
        self._changed = True
        holder = self._port_holder()
        if holder:
            # Our previous container is stopped, so whatever answers there is not ours:
            # starting now would let its health check pass for a container that never bound.
            log(f"Port {self.port} is still in use by {holder}; not starting {self.name}")
            self._put_previous_back(log)
            raise TargetError(f"port {self.port} is already in use by {holder}")
        try:
            container = self._create(release)
            log(f"Starting {self.name} from {release.image}")
            container.start()
        except ENGINE_ERRORS as exc:
            log(f"Could not start {self.name}: {_api_message(exc)}")
            self._put_previous_back(log)
            raise TargetError(f"could not start container {self.name}: {_api_message(exc)}") from None

    def wait(self, *, log: LogFn, should_stop: StopFn) -> None:
        try:
            self._wait_healthy(log, should_stop)
            if self._remove(self.previous_name):
                log(f"Removed {self.previous_name}")
        except ENGINE_ERRORS as exc:
            raise RolloutFailed(
                f"the Docker engine went away during the rollout of {self.name} ({_api_message(exc)})"
            ) from None

    def undo(self, previous: Release | None, *, log: LogFn) -> None:
        try:
            current = self._get(self.name)
            if (
                not self._changed
                and current is not None
                and (previous is None or _image_of(current) == previous.image)
            ):
                log(f"{self.name} was not replaced; leaving it as it is")
                if current.status != "running":
                    current.start()
                    self._wait_healthy(log, never_stop)
            elif self._get(self.previous_name) is not None:
                self._remove(self.name)
                log(f"Removed {self.name}; putting {self.previous_name} back")
                self._start_previous(log)
                self._wait_healthy(log, never_stop)
            elif previous is not None:
                self._restore_release(previous, log)
            else:
                self._remove(self.name)
                log(f"Removed {self.name}; nothing ran before, so nothing is running now")
        except (RolloutFailed, TargetError, *ENGINE_ERRORS) as exc:
            raise RolloutFailed(f"rollback failed, manual action needed: {_api_message(exc)}") from None

    # -- helpers -----------------------------------------------------------------------------------

    def close(self) -> None:
        self.client.close()

    def stop_and_remove(self) -> None:
        """Remove both containers (tests and cleanup)."""
        self._remove(self.name)
        self._remove(self.previous_name)

    def _restore_release(self, previous: Release, log: LogFn) -> None:
        container = self._get(self.name)
        if container is not None and _image_of(container) == previous.image:
            # apply() never got as far as replacing it; just make sure it runs.
            log(f"{self.name} still runs {previous.image}")
            if container.status != "running":
                container.start()
        else:
            self._remove(self.name)
            log(f"No {self.previous_name} to put back; starting {previous.image} afresh")
            self.apply(previous, log=log)
        self._wait_healthy(log, never_stop)

    def _wait_healthy(self, log: LogFn, should_stop: StopFn) -> None:
        try:
            wait_http_ok(
                self.health_url,
                timeout=self.health_timeout,
                should_stop=should_stop,
                log=log,
                fail_fast=self._exit_reason,
                policy=self.policy,
            )
            self._prove_it_answered()
        except RolloutFailed:
            self._log_tail(log)
            raise
        # A crash loop under a restart policy would hide the exit code from the fail-fast
        # check, so the policy is only switched on once the app answered.
        self._container().update(restart_policy={"Name": "unless-stopped"})

    def _check_health_host(self) -> None:
        try:
            resolve_checked(self.health_host, self.port, policy=self.policy)
        except OutboundRefused as exc:
            raise HealthHostRefused(f"the health check cannot run: {exc}") from None
        except OutboundError:
            pass  # a name that does not resolve yet: the health check reports it

    def _port_holder(self) -> str | None:
        """Who accepts connections on the target's port, or None when it is free."""
        try:
            with connect_checked(self.health_host, self.port, timeout=1, policy=self.policy):
                pass
        except OutboundRefused as exc:
            raise HealthHostRefused(f"the health check cannot run: {exc}") from None
        except (OSError, OutboundError):
            return None
        return self._describe_listener() or f"another program at {self.health_host}:{self.port}"

    def _describe_listener(self) -> str | None:
        """The local process listening on the port, with its container's name when it has one."""
        found = listeners(self.port) if self._engine_is_local() else None
        if not found:
            return None
        pid, command = found[0]
        for container in self.client.containers.list():
            if self._owns(container, pid):
                return f"container {container.name} (pid {pid})"
        return f"pid {pid} ({command})"

    def _prove_it_answered(self) -> None:
        """A health check proves nothing if another program answered it: the new container
        must still run, must not have failed to bind, and (on a local engine with host
        networking) must be the process that listens on the port."""
        container = self._container()
        bind_error = next((line for line in _tail(container, LOG_TAIL) if _BIND_ERROR.search(line)), None)
        if bind_error:
            raise RolloutFailed(
                f"container {self.name} could not bind port {self.port} ({bind_error.strip()}); "
                f"the health check was answered by {self._describe_listener() or 'another program'}"
            )
        if container.status != "running":
            code = container.attrs.get("State", {}).get("ExitCode")
            raise RolloutFailed(f"container {self.name} exited with code {code} right after the health check")
        if self.network_mode != "host" or not self._engine_is_local():
            return
        found = listeners(self.port)
        if found and not any(self._owns(container, pid) for pid, _ in found):
            raise RolloutFailed(
                f"the health check on port {self.port} was answered by {self._describe_listener()}, "
                f"not by container {self.name}"
            )

    @staticmethod
    def _owns(container: Container, pid: int) -> bool:
        """Whether `pid` runs in `container`: its init (State.Pid, as this host sees it)
        is the process or one of its parents."""
        root = container.attrs.get("State", {}).get("Pid") or 0
        return root > 0 and root in ancestors(pid)

    def _engine_is_local(self) -> bool:
        return self._engine_url().startswith("unix://")

    def _exit_reason(self) -> str | None:
        container = self._get(self.name)
        if container is None:
            return f"container {self.name} disappeared"
        state = container.attrs.get("State", {})
        if state.get("Status") in ("exited", "dead"):
            last = _tail(container, 1)
            tail = f" (last log line: {last[-1]})" if last else ""
            code = state.get("ExitCode")
            return f"container {self.name} exited with code {code} before it became healthy{tail}"
        return None

    def _log_tail(self, log: LogFn) -> None:
        container = self._get(self.name)
        lines = _tail(container, LOG_TAIL) if container is not None else []
        if lines:
            log(f"Last lines of the log of {self.name}:")
            for line in lines:
                log(f"  {line}")
        else:
            log(f"{self.name} wrote no log output")

    def _ensure_image(self, image: str, log: LogFn) -> None:
        try:
            self.client.images.get(image)
            return
        except ImageNotFound:
            pass
        except ENGINE_ERRORS as exc:
            raise TargetError(f"cannot reach the Docker engine at {self._engine_url()}: {exc}") from None
        log(f"Pulling {image}")
        try:
            self.client.images.pull(image)
        except ENGINE_ERRORS as exc:
            raise TargetError(f"could not pull {image}: {_api_message(exc)}") from None

    def _retire_current(self, log: LogFn) -> None:
        try:
            old = self._get(self.name)
            if old is None:
                log(f"No container {self.name} yet; this is its first release")
                return
            if self._remove(self.previous_name):
                log(f"Removed stale {self.previous_name}")
            log(f"Stopping {self.name} ({_image_of(old)}) and keeping it as {self.previous_name}")
            self._changed = True
            old.stop(timeout=STOP_TIMEOUT)
        except ENGINE_ERRORS as exc:
            raise TargetError(
                f"could not stop the running container {self.name}: {_api_message(exc)}"
            ) from None
        try:
            old.rename(self.previous_name)
        except ENGINE_ERRORS as exc:
            old.start()  # nothing may change when apply() raises TargetError
            self._changed = False
            raise TargetError(
                f"could not rename {self.name} to {self.previous_name}: {_api_message(exc)}"
            ) from None

    def _create(self, release: Release) -> Container:
        host_mode = self.network_mode == "host"
        environment = dict(release.variables)
        environment["PORT"] = str(self.port if host_mode else self.container_port)
        labels = {f"shipmate.{_label_key(key)}": str(value) for key, value in release.annotations.items()}
        labels.update({"shipmate.managed": "true", IMAGE_LABEL: release.image})
        ports = None if host_mode else {f"{self.container_port}/tcp": (self.bind_host, self.port)}
        return self.client.containers.create(
            release.image,
            name=self.name,
            environment=environment,
            labels=labels,
            network_mode=self.network_mode,
            ports=ports,
            volumes=self.volumes or None,
            init=True,
            restart_policy={"Name": "no"},
            detach=True,
        )

    def _start_previous(self, log: LogFn) -> None:
        previous = self._container(self.previous_name)
        previous.rename(self.name)
        log(f"Starting {self.name} again ({_image_of(previous)})")
        previous.start()

    def _put_previous_back(self, log: LogFn) -> None:
        try:
            self._remove(self.name)
            if self._get(self.previous_name) is not None:
                self._start_previous(log)
            self._changed = False
        except ENGINE_ERRORS as exc:
            raise RolloutFailed(f"rollback failed, manual action needed: {_api_message(exc)}") from None

    def _get(self, name: str) -> Container | None:
        try:
            return self.client.containers.get(name)
        except NotFound:
            return None

    def _container(self, name: str | None = None) -> Container:
        return self.client.containers.get(name or self.name)

    def _remove(self, name: str) -> bool:
        try:
            self.client.containers.get(name).remove(force=True)
        except NotFound:
            return False
        return True

    def _engine_url(self) -> str:
        api = self.client.api
        base_url = str(getattr(api, "base_url", "?"))
        # docker-py rewrites unix:// URLs to http+docker://localhost; the socket path is
        # what the user configured, so show that.
        socket_path = getattr(getattr(api, "_custom_adapter", None), "socket_path", None)
        if base_url.startswith("http+docker://") and socket_path:
            return f"unix://{socket_path}"
        return base_url


def _image_of(container: Container) -> str:
    labels = container.labels or {}
    return labels.get(IMAGE_LABEL) or container.attrs.get("Config", {}).get("Image", "?")


def _tail(container: Container, lines: int) -> list[str]:
    try:
        raw = container.logs(tail=lines, stdout=True, stderr=True)
    except ENGINE_ERRORS:
        return []
    return raw.decode("utf-8", "replace").splitlines()[-lines:]


def _label_key(key: str) -> str:
    return _LABEL_UNSAFE_RE.sub("-", key.lower()).strip(".-") or "annotation"


def _api_message(exc: BaseException) -> str:
    if isinstance(exc, APIError) and exc.explanation:
        return str(exc.explanation)
    if engine_gone(exc):
        return "the Docker engine is not answering"
    return str(exc)[:300]
