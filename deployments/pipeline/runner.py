"""Runs the stages of one deployment in order.

Two phases, because a protected environment waits for people between them:
`run_build` (checkout → build → test → push) ends with an image digest;
`run_release` (rollout → verify) puts that digest on the target and rolls back
to the last good release when the rollout or the smoke check fails.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from . import build, git, health, history, pipeline_file, push, testrun
from .base import Cancelled, Release, RolloutFailed, StageError, Target


class RolledBack(StageError):
    """The new release failed and the previous one was restored."""


class Recorder(Protocol):
    """Where the runner reports to; the Django side stores it and streams it."""

    def stage(self, name: str) -> AbstractContextManager[None]: ...
    def skip(self, name: str, note: str) -> None: ...
    def log(self, text: str) -> None: ...
    def should_stop(self) -> bool: ...
    def record(self, **fields: Any) -> None: ...
    def find_reusable(self, commit_sha: str) -> str | None: ...


@dataclass
class BuildPlan:
    repo_url: str
    ref: str
    image_repository: str  # registry/name, no tag
    dockerfile_path: str = "Dockerfile"
    build_context: str = "."
    test_command: str = ""
    build_args: dict[str, str] = field(default_factory=dict)  # only ever from shipmate.yaml
    dockerfile_repo_url: str = ""
    dockerfile_repo_ref: str = ""
    allowed_protocols: tuple[str, ...] = ("https", "ssh", "git", "file")
    build_network_mode: str = "bridge"
    test_timeout: float = 600.0
    test_limits: testrun.ContainerLimits = field(default_factory=testrun.ContainerLimits)
    work_dir: Path | None = None
    known_commit: str = ""  # set when the deployment reuses an existing build
    known_digest: str = ""
    previous_commit: str = ""  # what the environment runs now, for the commit list
    history_dir: Path | None = None  # a blobless cache repository for that list
    docker: Callable[[], Any] | None = None  # returns a docker.DockerClient
    registry_auth: dict[str, str] | None = None


@dataclass
class ReleasePlan:
    target: Target
    release: Release
    previous: Release | None
    smoke_url: str = ""
    smoke_timeout: float = 30.0
    extra: dict[str, Any] = field(default_factory=dict)


def run_build(plan: BuildPlan, rec: Recorder) -> str:
    """Returns the pushed image digest (name@sha256:…)."""
    if plan.known_digest:
        rec.record(commit_sha=plan.known_commit, image_digest=plan.known_digest)
        _record_commits(plan, plan.known_commit, rec)
        for name in ("checkout", "build", "test", "push"):
            rec.skip(name, f"reusing {plan.known_digest}")
        return plan.known_digest

    with tempfile.TemporaryDirectory(prefix="shipmate-", dir=plan.work_dir) as tmp:
        workdir = Path(tmp)
        with rec.stage("checkout"):
            sha = git.resolve_ref(
                plan.repo_url, plan.ref, allowed_protocols=plan.allowed_protocols, log=rec.log
            )
            rec.record(commit_sha=sha)
            _record_commits(plan, sha, rec)
            reused = rec.find_reusable(sha)
            if reused is None:
                source = git.checkout(
                    plan.repo_url,
                    sha,
                    workdir / "src",
                    allowed_protocols=plan.allowed_protocols,
                    log=rec.log,
                    should_stop=rec.should_stop,
                )
                rec.record(committed_at=git.commit_time(source, sha))
                plan = _apply_pipeline_file(plan, source, rec)
                dockerfile, images_sha = _dockerfile(plan, source, workdir, rec)
                context = git.safe_subpath(source, plan.build_context)
        if reused is not None:
            rec.record(image_digest=reused)
            for name in ("build", "test", "push"):
                rec.skip(name, f"{sha[:10]} was built and tested before: reusing {reused}")
            return reused

        client = plan.docker() if plan.docker else None
        try:
            tag = f"{plan.image_repository}:{sha}"
            with rec.stage("build"):
                build.build_image(
                    client,
                    context_dir=context,
                    dockerfile=dockerfile,
                    tag=tag,
                    labels=build.oci_labels(plan.repo_url, sha, plan.ref)
                    | build.dockerfile_labels(plan.dockerfile_repo_url, images_sha),
                    build_args=plan.build_args,
                    network_mode=plan.build_network_mode,
                    log=rec.log,
                    should_stop=rec.should_stop,
                )
            if plan.test_command:
                with rec.stage("test"):
                    testrun.run_tests(
                        client,
                        image=tag,
                        command=plan.test_command,
                        timeout=plan.test_timeout,
                        log=rec.log,
                        should_stop=rec.should_stop,
                        limits=plan.test_limits,
                    )
                    rec.record(tests_passed=True)
            else:
                rec.skip("test", "no test command configured")
            with rec.stage("push"):
                digest = push.push_image(
                    client,
                    repository=plan.image_repository,
                    tag=sha,
                    log=rec.log,
                    should_stop=rec.should_stop,
                    auth_config=plan.registry_auth,
                )
                rec.record(image_digest=digest)
            return digest

        finally:
            if client is not None:
                client.close()


def _apply_pipeline_file(plan: BuildPlan, source: Path, rec: Recorder) -> BuildPlan:
    """The commit's shipmate.yaml overrides the repository's build and test settings."""
    found = pipeline_file.load(source)
    if found is None:
        return plan
    settings = found.settings()
    rec.record(pipeline_file=settings)
    if not settings:
        rec.log(f"{pipeline_file.FILE_NAME} sets nothing; using the repository's settings")
        return plan
    for key, value in settings.items():
        rec.log(f"{pipeline_file.FILE_NAME}: {key} = {value}")
    return dataclasses.replace(
        plan,
        dockerfile_path=found.dockerfile or plan.dockerfile_path,
        build_context=found.context or plan.build_context,
        test_command=plan.test_command if found.test_command is None else found.test_command,
        build_args=found.build_args,
    )


def _dockerfile(plan: BuildPlan, source: Path, workdir: Path, rec: Recorder) -> tuple[Path, str]:
    """The Dockerfile to build with, and the commit of the image-definition repository
    it came from ("" when it lives in the application's own repository)."""
    if not plan.dockerfile_repo_url:
        return git.safe_subpath(source, plan.dockerfile_path), ""
    # Image definitions kept in their own repository (the seed article's layout).
    ref = plan.dockerfile_repo_ref or "HEAD"
    sha = git.resolve_ref(
        plan.dockerfile_repo_url, ref, allowed_protocols=plan.allowed_protocols, log=rec.log
    )
    images = git.checkout(
        plan.dockerfile_repo_url,
        sha,
        workdir / "images",
        allowed_protocols=plan.allowed_protocols,
        log=rec.log,
        should_stop=rec.should_stop,
    )
    rec.log(f"Dockerfile from {git.redact_url(plan.dockerfile_repo_url)} at {sha[:10]}")
    rec.record(dockerfile_commit_sha=sha)
    return git.safe_subpath(images, plan.dockerfile_path), sha


def _record_commits(plan: BuildPlan, sha: str, rec: Recorder) -> None:
    """What approvers read: the commits between what the environment runs and `sha`."""
    if not plan.previous_commit or not plan.history_dir or plan.previous_commit == sha:
        return
    try:
        cache = history.history_cache(
            plan.history_dir,
            plan.repo_url,
            [plan.previous_commit, sha],
            allowed_protocols=plan.allowed_protocols,
        )
        commits = history.commits_between(cache, plan.previous_commit, sha)
    except StageError as exc:
        rec.log(f"(could not list commits since {plan.previous_commit[:10]}: {exc})")
        return
    rec.record(commits=commits)


def run_release(plan: ReleasePlan, rec: Recorder) -> None:
    """Raises RolledBack when the new release failed and the old one runs again."""
    target = plan.target
    with rec.stage("rollout"):
        target.apply(plan.release, log=rec.log)
        try:
            target.wait(log=rec.log, should_stop=rec.should_stop)
        except (RolloutFailed, Cancelled) as exc:
            _restore(plan, rec, exc)
    if not plan.smoke_url:
        rec.skip("verify", "no smoke URL configured")
        return
    with rec.stage("verify"):
        try:
            health.wait_http_ok(
                plan.smoke_url, timeout=plan.smoke_timeout, should_stop=rec.should_stop, log=rec.log
            )
        except (RolloutFailed, StageError, Cancelled) as exc:
            _restore(plan, rec, exc)


def _restore(plan: ReleasePlan, rec: Recorder, failure: Exception) -> None:
    rec.log(f"{failure}")
    rec.log("Restoring the last good release" + (f" {plan.previous.image}" if plan.previous else ""))
    try:
        plan.target.undo(plan.previous, log=rec.log)
    except RolloutFailed as exc:
        message = str(exc)
        if "manual action needed" not in message:
            message = f"rollback failed, manual action needed: {message}"
        raise StageError(message) from exc
    if isinstance(failure, Cancelled):
        raise failure
    raise RolledBack(f"{failure}; rolled back to the last good release")
