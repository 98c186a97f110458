"""shipmate.yaml: what it may set, and errors that name the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployments.pipeline.pipeline_file import PipelineFile, PipelineFileError, load, parse

VALID = """\
version: 1
build:
  dockerfile: docker/Dockerfile
  context: app
  args:
    FLAVOUR: slim
    LEVEL: 3
test:
  command: sh /app/test.sh --fast
health_path: /ready
smoke_path: /about
"""


def test_a_complete_file_sets_build_test_and_check_paths():
    found = parse(VALID)
    assert found == PipelineFile(
        dockerfile="docker/Dockerfile",
        context="app",
        build_args={"FLAVOUR": "slim", "LEVEL": "3"},
        test_command="sh /app/test.sh --fast",
        health_path="/ready",
        smoke_path="/about",
    )
    assert found.settings() == {
        "build.dockerfile": "docker/Dockerfile",
        "build.context": "app",
        "build.args": {"FLAVOUR": "slim", "LEVEL": "3"},
        "test.command": "sh /app/test.sh --fast",
        "health_path": "/ready",
        "smoke_path": "/about",
    }


def test_an_empty_file_sets_nothing():
    assert parse("").settings() == {}
    assert parse("# nothing yet\n").settings() == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("build:\n  dockerfile: [a, b\n", "shipmate.yaml line 3: not valid YAML"),
        ("version: 2\n", "shipmate.yaml line 1: version must be 1"),
        (
            "build:\n  dockerfile: ../../etc/passwd\n",
            "shipmate.yaml line 2: build.dockerfile must be a path inside",
        ),
        ("build:\n  context: /abs\n", "shipmate.yaml line 2: build.context must be a path inside"),
        ("build:\n  cache: true\n", "shipmate.yaml line 2: unknown key `build.cache`"),
        ("test:\n  command:\n", "shipmate.yaml line 2: test.command must be a single value"),
        ("health_path: healthz\n", "shipmate.yaml line 1: health_path must be a path starting with '/'"),
        ("build:\n  args:\n    'BAD NAME': x\n", "shipmate.yaml line 3: build argument name 'BAD NAME'"),
        ("build: docker\n", "shipmate.yaml line 1: build must be a mapping"),
        ("test:\n  command: a\ntest:\n  command: b\n", "shipmate.yaml line 3: `test` is given twice"),
        ("- a\n- b\n", "shipmate.yaml line 1: the file must be a mapping"),
        ("colour: blue\n", "shipmate.yaml line 1: unknown key `colour`"),
    ],
)
def test_a_bad_file_is_refused_with_the_line_and_the_reason(text, message):
    with pytest.raises(PipelineFileError) as failure:
        parse(text)
    assert str(failure.value).startswith(message)


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ("variables:\n  DEBUG: '1'\n", 1, "variables"),
        ("version: 1\ntarget:\n  port: 80\n", 2, "target"),
        ("policy:\n  approvals_required: 0\n", 1, "policy"),
        ("environments:\n  live: {}\n", 1, "environments"),
        ("build:\n  dockerfile: Dockerfile\n  secrets: x\n", 3, "build.secrets"),
    ],
)
def test_targets_policy_and_variables_cannot_be_set_from_the_repository(text, line, key):
    with pytest.raises(PipelineFileError) as failure:
        parse(text)
    message = str(failure.value)
    assert message.startswith(f"shipmate.yaml line {line}: `{key}` is not allowed in shipmate.yaml")
    assert "managed in Shipmate" in message


def test_load_reads_the_file_at_the_root_and_refuses_a_symlink(tmp_path: Path):
    assert load(tmp_path) is None
    (tmp_path / "shipmate.yaml").write_text("test:\n  command: make check\n")
    assert load(tmp_path) == PipelineFile(test_command="make check")

    (tmp_path / "shipmate.yaml").unlink()
    (tmp_path / "shipmate.yaml").symlink_to("/etc/hostname")
    with pytest.raises(PipelineFileError, match="not a symbolic link"):
        load(tmp_path)
