"""Each target kind's settings as one typed, frozen dataclass.

`parse()` is the only place that knows the keys, their types, defaults and rules: the
targets build from it, and the placement model, the Manage forms, the Django admin,
the YAML apply and the worker all validate through it. A bad value raises
`SettingsError`, which names the setting so a form can show the message next to it.
Keys a kind does not know are ignored (an environment switched from Docker to
Kubernetes may still hold a port).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, ClassVar, TypeVar, get_type_hints

from ..base import TargetError
from ..pipeline_file import http_path_problem

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_HOST_RE = re.compile(r"^[A-Za-z0-9.:-]+$")
DOCKER_HOST_SCHEMES = ("unix://", "tcp://", "ssh://", "http://", "https://", "npipe://")
EMPTY: tuple[Any, ...] = (None, "", [], ())

Parser = Callable[[str, Any], Any]
S = TypeVar("S", bound="TargetSettings")


class SettingsError(TargetError):
    """One setting is missing ("required") or wrong ("invalid"); `field` names it."""

    def __init__(self, field: str, message: str, *, code: str = "invalid") -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.code = code


def setting(parse: Parser, help: str, default: Any = dataclasses.MISSING, label: str = "") -> Any:
    """A dataclass field with its parser and help text; no default means required."""
    metadata = {"parse": parse, "help": help, "label": label}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class SettingInfo:
    """What a form needs to show one setting."""

    name: str
    type: type  # int, float, str, bool or list (of str)
    required: bool
    default: Any
    help: str
    label: str


class TargetSettings:
    """Base of the per-kind dataclasses."""

    kind: ClassVar[str]
    # Settings whose missing value gets a longer message than "X is required".
    required_messages: ClassVar[dict[str, str]] = {}

    @classmethod
    def parse(cls: type[S], data: Mapping[str, Any], *, bind_roots: Sequence[str] = ()) -> S:
        """Validate `data` (a placement's effective settings) and build the settings.
        `bind_roots` are the directories a bind mount may come from (Docker only)."""
        return cls(**cls.clean_values(data, bind_roots=bind_roots))

    @classmethod
    def clean_values(
        cls, data: Mapping[str, Any], *, bind_roots: Sequence[str] = (), partial: bool = False
    ) -> dict[str, Any]:
        """The typed value of every setting in `data`. With `partial`, missing required
        settings are left out rather than refused: an environment holds only the defaults
        its applications share, and each placement brings the rest."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            raw = data.get(f.name)
            if raw in EMPTY:
                if f.default is dataclasses.MISSING and not partial:
                    message = cls.required_messages.get(f.name, f"{f.name} is required")
                    raise SettingsError(f.name, message, code="required")
                continue
            values[f.name] = cls._parse_value(f.name, raw, f.metadata["parse"], bind_roots)
        return values

    @classmethod
    def _parse_value(cls, name: str, raw: Any, parse: Parser, bind_roots: Sequence[str]) -> Any:
        return parse(name, raw)

    @classmethod
    def describe(cls) -> list[SettingInfo]:
        hints = get_type_hints(cls)
        infos = []
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            hint = hints[f.name]
            if getattr(hint, "__origin__", None) is tuple:
                kind: type = list
            else:  # X or X | None
                kind = next(
                    t for t in (bool, int, float, str) if hint is t or t in getattr(hint, "__args__", ())
                )
            required = f.default is dataclasses.MISSING
            default = None if required else f.default
            infos.append(
                SettingInfo(f.name, kind, required, default, f.metadata["help"], f.metadata["label"])
            )
        return infos

    def to_dict(self) -> dict[str, Any]:
        """Every setting as JSON-ready values; parse(to_dict()) gives the same settings."""
        return {
            f.name: list(value) if isinstance(value := getattr(self, f.name), tuple) else value
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
        }


# -- parsers: each takes the setting's name and a non-empty raw value --------------------------


def _port(key: str, value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise SettingsError(key, f"{key} must be a whole number from 1 to 65535, not {value!r}")
    return value


def _seconds(key: str, value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if isinstance(value, bool) or not 0 < seconds <= 3600:
        raise SettingsError(key, f"{key} must be a number of seconds from 0 to 3600, not {value!r}")
    return seconds


def _ip(key: str, value: Any) -> str:
    try:
        if not isinstance(value, str):
            raise ValueError
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise SettingsError(key, f"{key} must be an IP address such as 127.0.0.1, not {value!r}") from None


def _host(key: str, value: Any) -> str:
    if not isinstance(value, str) or not _HOST_RE.match(value):
        raise SettingsError(key, f"{key} must be a host name or IP address, not {value!r}")
    return value


def _docker_host(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.startswith(DOCKER_HOST_SCHEMES):
        raise SettingsError(
            key,
            f"{key} must start with unix://, tcp:// or ssh:// (empty: the worker's DOCKER_HOST), not {value!r}",
        )
    return value


def _network_mode(key: str, value: Any) -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise SettingsError(key, f"{key} must be 'host', 'bridge' or a Docker network name, not {value!r}")
    if value == "none":
        raise SettingsError(key, f"{key} {value!r} would leave the app unreachable for the health check")
    return value


def _health_path(key: str, value: Any) -> str:
    if not isinstance(value, str) or http_path_problem(value):
        raise SettingsError(key, f"{key} must be a path starting with '/', not {value!r}")
    return value


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise SettingsError(key, f"{key} must be text, not {value!r}")
    return value.strip()


def _k8s_name(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SettingsError(key, f"Kubernetes setting {key!r} is required", code="required")
    return value.strip()


def _k8s_number(key: str, value: Any, *, integer: bool = False) -> Any:
    try:
        number = int(value) if integer else float(value)
    except (TypeError, ValueError):
        raise SettingsError(key, f"Kubernetes setting {key!r} must be a number, got {value!r}") from None
    if isinstance(value, bool) or number <= 0:
        raise SettingsError(key, f"Kubernetes setting {key!r} must be a positive number, got {value!r}")
    return number


def _k8s_count(key: str, value: Any) -> int:
    return int(_k8s_number(key, value, integer=True))


def _k8s_float(key: str, value: Any) -> float:
    return float(_k8s_number(key, value))


def _flag(key: str, value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


def _no_parse(key: str, value: Any) -> Any:  # volumes: DockerSettings._parse_value knows the roots
    return value


def parse_volumes(value: Any, allowed_bind_roots: Sequence[str]) -> list[str]:
    """Check a placement's `volumes`: ["data:/var/lib/app", "/srv/shop/uploads:/uploads"].

    Named volumes are always allowed. A bind mount only from a directory under one of
    `allowed_bind_roots` (SHIPMATE_BIND_MOUNT_ROOTS, set by an admin), so a placement
    cannot mount the host's /etc or the Docker socket into an application.
    """
    if value in EMPTY:
        return []
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise SettingsError("volumes", 'volumes must be a list such as ["data:/var/lib/app"]')
    checked = []
    for entry in value:
        source, sep, target = entry.partition(":")
        target, _, mode = target.partition(":")
        if not sep or not target.startswith("/") or mode not in ("", "ro", "rw"):
            raise SettingsError("volumes", f"volume {entry!r} must be SOURCE:/path[:ro]")
        if source.startswith("/"):
            resolved = PurePosixPath(posixpath.normpath(source))
            roots = [
                PurePosixPath(posixpath.normpath(root)) for root in allowed_bind_roots if root.startswith("/")
            ]
            if not any(resolved == root or root in resolved.parents for root in roots):
                allowed = ", ".join(map(str, roots)) or "none (SHIPMATE_BIND_MOUNT_ROOTS is empty)"
                raise SettingsError(
                    "volumes", f"bind mount {resolved} is not under an allowed directory ({allowed})"
                )
            source = str(resolved)
        elif not NAME_RE.match(source):
            raise SettingsError(
                "volumes", f"volume name {source!r} may use letters, digits, '.', '_' and '-'"
            )
        checked.append(":".join(filter(None, (source, target, mode))))
    return checked


@dataclass(frozen=True)
class DockerSettings(TargetSettings):
    """One container on a Docker engine."""

    kind: ClassVar[str] = "docker"
    required_messages: ClassVar[dict[str, str]] = {
        "port": "port is required (the host port the app listens on)"
    }

    port: int = setting(_port, "Host port the app listens on.")
    docker_host: str = setting(
        _docker_host, "unix://, tcp:// or ssh://; empty: the worker's DOCKER_HOST.", ""
    )
    container_port: int | None = setting(_port, "Port inside the container; empty: same as the port.", None)
    network_mode: str = setting(_network_mode, "host, bridge or a Docker network name.", "host")
    bind_host: str = setting(_ip, "Address a bridged port is published on.", "127.0.0.1")
    health_host: str = setting(_host, "Where the health check connects.", "127.0.0.1")
    health_path: str = setting(_health_path, "Must answer 2xx once the app is up.", "/healthz")
    health_timeout: float = setting(_seconds, "Seconds to wait for a healthy answer.", 30.0)
    volumes: tuple[str, ...] = setting(
        _no_parse,
        "One per line: name:/path for a named volume, /host/dir:/path[:ro] for a bind mount "
        "under SHIPMATE_BIND_MOUNT_ROOTS.",
        (),
    )

    @classmethod
    def _parse_value(cls, name: str, raw: Any, parse: Parser, bind_roots: Sequence[str]) -> Any:
        if name == "volumes":
            return tuple(parse_volumes(raw, bind_roots))
        return parse(name, raw)


@dataclass(frozen=True)
class KubernetesSettings(TargetSettings):
    """One container of one Deployment."""

    kind: ClassVar[str] = "kubernetes"
    required_messages: ClassVar[dict[str, str]] = {
        key: f"Kubernetes setting {key!r} is required" for key in ("namespace", "deployment", "container")
    }

    namespace: str = setting(_k8s_name, "Usually the environment's, shared by its applications.")
    deployment: str = setting(_k8s_name, "The Deployment to roll out.", label="Deployment")
    container: str = setting(_k8s_name, "The container in it that gets the image.")
    context: str = setting(_text, "kubeconfig context; empty: the current one.", "")
    kubeconfig_path: str = setting(_text, "A kubeconfig file on the worker.", "")
    in_cluster: bool = setting(_flag, "Use the worker's service account.", False)
    timeout: float = setting(_k8s_float, "Rollout timeout in seconds.", 600.0)
    max_restarts: int = setting(_k8s_count, "Container restarts before the rollout counts as failed.", 3)
    poll_interval: float = setting(_k8s_float, "Seconds between status checks.", 1.0)


KINDS: dict[str, type[TargetSettings]] = {"docker": DockerSettings, "kubernetes": KubernetesSettings}


def settings_class(kind: str) -> type[TargetSettings]:
    try:
        return KINDS[kind]
    except KeyError:
        raise TargetError(f"unknown target kind {kind!r}") from None


def parse_settings(kind: str, data: Mapping[str, Any], *, bind_roots: Sequence[str] = ()) -> TargetSettings:
    """The settings of a target of `kind`; raises SettingsError naming the bad setting."""
    return settings_class(kind).parse(data, bind_roots=bind_roots)
