"""`shipmate.yaml`: build and test settings versioned with the code.

An optional file at the root of the application's repository, read at the commit being
built. It may set how the image is built and tested, and which paths the health and
smoke checks use. It can never change targets, policy, approvals or variables: those
are kept in Shipmate, so a pull request cannot lower the bar for live. Example:

    version: 1
    build:
      dockerfile: docker/Dockerfile
      context: .
      args:
        APP_FLAVOUR: slim
    test:
      command: sh /app/test.sh
    health_path: /healthz
    smoke_path: /

Every error names the line: the checkout stage fails with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml

from .base import StageError

FILE_NAME = "shipmate.yaml"
MAX_BYTES = 64 * 1024
_ARG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
# Keys a repository might try to set but may not, with the reason shown to the user.
_KEPT_IN_SHIPMATE = {
    "target",
    "targets",
    "environment",
    "environments",
    "placement",
    "placements",
    "variables",
    "secrets",
    "env",
    "policy",
    "approvals",
    "approval",
    "approvers",
    "deploy",
    "deploy_groups",
    "approve_groups",
    "port",
    "namespace",
    "kubeconfig",
    "docker_host",
    "freeze",
    "locks",
}
_NOT_ALLOWED = (
    "is not allowed in shipmate.yaml: targets, policy, approvals and variables are managed "
    "in Shipmate, so a change to the repository cannot change where or with whose consent it ships"
)


class PipelineFileError(StageError):
    """shipmate.yaml cannot be used; the message names the line and the reason."""


@dataclass(frozen=True)
class PipelineFile:
    dockerfile: str | None = None
    context: str | None = None
    build_args: dict[str, str] = field(default_factory=dict)
    test_command: str | None = None
    health_path: str | None = None
    smoke_path: str | None = None

    def settings(self) -> dict[str, Any]:
        """What the file set, by its own key names (shown on the deployment page)."""
        found: dict[str, Any] = {
            "build.dockerfile": self.dockerfile,
            "build.context": self.context,
            "build.args": dict(self.build_args) or None,
            "test.command": self.test_command,
            "health_path": self.health_path,
            "smoke_path": self.smoke_path,
        }
        return {key: value for key, value in found.items() if value is not None}


def relative_path_problem(value: str) -> str | None:
    """Why `value` is not a path inside the repository, or None. Shared with the UI's forms."""
    if not value or value.startswith("/") or ".." in value.split("/") or "\x00" in value:
        return "must be a path inside the repository"
    return None


def http_path_problem(value: str) -> str | None:
    """Why `value` is not a URL path such as /healthz, or None. Shared with the Docker target."""
    if not value.startswith("/") or any(c.isspace() for c in value):
        return "must be a path starting with '/' and without spaces"
    return None


def load(source: Path) -> PipelineFile | None:
    """The file at the root of the checkout `source`, or None when there is none."""
    path = source / FILE_NAME
    if path.is_symlink():
        raise PipelineFileError(f"{FILE_NAME} must be a file, not a symbolic link")
    if not path.exists():
        return None
    if not path.is_file():
        raise PipelineFileError(f"{FILE_NAME} must be a file")
    data = path.read_bytes()
    if len(data) > MAX_BYTES:
        raise PipelineFileError(f"{FILE_NAME} is larger than {MAX_BYTES // 1024} KiB")
    return parse(data.decode("utf-8", errors="replace"))


def parse(text: str) -> PipelineFile:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise PipelineFileError(f"{FILE_NAME} line {line}: not valid YAML ({exc.problem})") from None
    except yaml.YAMLError as exc:
        raise PipelineFileError(f"{FILE_NAME}: not valid YAML ({exc})") from None
    if root is None:
        return PipelineFile()
    top = _mapping(root, "the file")
    values: dict[str, Any] = {}
    for key, node in top.items():
        if key == "version":
            if _scalar(node, key) not in ("1",):
                _fail(node, "version must be 1")
        elif key == "build":
            build = _mapping(node, "build")
            for sub, sub_node in build.items():
                if sub in ("dockerfile", "context"):
                    values[sub] = _path(sub_node, f"build.{sub}")
                elif sub == "args":
                    values["build_args"] = _build_args(sub_node)
                else:
                    _unknown(sub_node, f"build.{sub}", "dockerfile, context, args")
        elif key == "test":
            test = _mapping(node, "test")
            for sub, sub_node in test.items():
                if sub != "command":
                    _unknown(sub_node, f"test.{sub}", "command")
                values["test_command"] = _scalar(sub_node, "test.command")
        elif key in ("health_path", "smoke_path"):
            path = _scalar(node, key)
            if problem := http_path_problem(path):
                _fail(node, f"{key} {problem}")
            values[key] = path
        else:
            _unknown(node, key, "version, build, test, health_path, smoke_path")
    return PipelineFile(**values)


def _fail(node: yaml.Node, reason: str) -> NoReturn:
    raise PipelineFileError(f"{FILE_NAME} line {node.start_mark.line + 1}: {reason}")


def _unknown(node: yaml.Node, key: str, allowed: str) -> NoReturn:
    line = getattr(node, "key_mark", node.start_mark).line + 1
    if key.rsplit(".", 1)[-1].lower() in _KEPT_IN_SHIPMATE:
        raise PipelineFileError(f"{FILE_NAME} line {line}: `{key}` {_NOT_ALLOWED}")
    raise PipelineFileError(f"{FILE_NAME} line {line}: unknown key `{key}` (allowed here: {allowed})")


def _mapping(node: yaml.Node, what: str) -> dict[str, yaml.Node]:
    """key -> value node; each value's `key_mark` is where its key stands."""
    if not isinstance(node, yaml.MappingNode):
        _fail(node, f"{what} must be a mapping of keys to values")
    found: dict[str, yaml.Node] = {}
    for key_node, value_node in node.value:
        key = _scalar(key_node, "a key")
        if key in found:
            _fail(key_node, f"`{key}` is given twice")
        value_node.key_mark = key_node.start_mark
        found[key] = value_node
    return found


def _scalar(node: yaml.Node, what: str) -> str:
    if not isinstance(node, yaml.ScalarNode) or node.tag == "tag:yaml.org,2002:null":
        _fail(node, f"{what} must be a single value")
    return str(node.value)


def _path(node: yaml.Node, what: str) -> str:
    value = _scalar(node, what)
    if problem := relative_path_problem(value):
        _fail(node, f"{what} {problem}")
    return value


def _build_args(node: yaml.Node) -> dict[str, str]:
    args = {}
    for name, value_node in _mapping(node, "build.args").items():
        if not _ARG_NAME.match(name):
            _fail(value_node, f"build argument name {name!r} must be letters, digits and _")
        args[name] = _scalar(value_node, f"build.args.{name}")
    return args
