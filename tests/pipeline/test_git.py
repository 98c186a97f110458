"""The checkout stage against real git repositories made with the demo generator."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from deployments.demo_app import add_commit
from deployments.pipeline import git, history
from deployments.pipeline.base import Cancelled, StageError
from deployments.pipeline.git import GitError


def rev(repo: Path, name: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "rev-parse", name], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_branch_resolves_to_its_tip_commit(demo_repo: Path, lines) -> None:
    sha = git.resolve_ref(str(demo_repo), "main", log=lines)

    assert sha == rev(demo_repo, "main")
    assert f"Resolved main to {sha}" in lines


def test_annotated_tag_resolves_to_the_tagged_commit_not_the_tag_object(demo_repo: Path) -> None:
    sha = git.resolve_ref(str(demo_repo), "v1.0")

    assert sha == rev(demo_repo, "main~1")
    assert sha != rev(demo_repo, "v1.0")  # the tag object itself


def test_fully_qualified_ref_resolves(demo_repo: Path) -> None:
    assert git.resolve_ref(str(demo_repo), "refs/tags/v1.0") == rev(demo_repo, "main~1")


def test_abbreviated_sha_of_a_commit_that_no_ref_points_at_resolves_to_the_full_sha(demo_repo: Path) -> None:
    add_commit(demo_repo, "A third commit", {"NOTES": "three"})
    middle = rev(demo_repo, "main~1")

    assert git.resolve_ref(str(demo_repo), middle[:8]) == middle


def test_full_sha_of_an_inner_commit_resolves_over_a_file_url(demo_repo: Path) -> None:
    add_commit(demo_repo, "A third commit", {"NOTES": "three"})
    middle = rev(demo_repo, "main~1")

    assert git.resolve_ref(f"file://{demo_repo}", middle.upper()) == middle


@pytest.mark.parametrize("ref", ["no-such-branch", "deadbeef"])
def test_nonexistent_ref_is_reported_with_the_url(demo_repo: Path, ref: str) -> None:
    with pytest.raises(GitError, match=f"ref '{ref}' does not exist in {demo_repo}"):
        git.resolve_ref(str(demo_repo), ref)


def test_ref_starting_with_dash_is_rejected_before_git_runs(demo_repo: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    with pytest.raises(GitError, match="must not start with '-'"):
        git.resolve_ref(str(demo_repo), f"--upload-pack=touch{marker}")
    assert not marker.exists()


@pytest.mark.parametrize("ref", ["", "a..b", "main branch", "foo^", "x:y", "bad\x01", "@", "end."])
def test_malformed_ref_is_rejected(ref: str) -> None:
    with pytest.raises(GitError):
        git.validate_ref(ref)


def test_url_starting_with_dash_is_rejected() -> None:
    with pytest.raises(GitError, match="must not start with '-'"):
        git.validate_url("--upload-pack=touch /tmp/x")


def test_ssh_host_starting_with_dash_is_rejected() -> None:
    with pytest.raises(GitError, match="host"):
        git.validate_url("ssh://-oProxyCommand=touch%20x/repo")


def test_ext_transport_is_refused() -> None:
    with pytest.raises(GitError, match="transport 'ext::' is not allowed"):
        git.validate_url("ext::/bin/touch%20x")


def test_git_itself_refuses_protocols_outside_the_allowlist(demo_repo: Path) -> None:
    # Defense in depth: a URL that slipped past validation still meets GIT_ALLOW_PROTOCOL.
    result = subprocess.run(
        ["git", "ls-remote", "--", str(demo_repo)],
        env=git.git_env(("https",)),
        capture_output=True,
        text=True,
    )

    assert result.returncode != 0
    assert "transport 'file' not allowed" in result.stderr


@pytest.mark.parametrize(
    ("url", "protocol"),
    [
        ("git@example.com:org/app.git", "ssh"),
        ("/srv/git/app", "file"),
        ("file:///srv/git/app", "file"),
        ("http://example.com/app.git", "http"),
    ],
)
def test_protocol_outside_the_allowlist_is_refused(url: str, protocol: str) -> None:
    git.validate_url(url, ("https", "ssh", "git", "file", "http"))
    allowed = tuple(p for p in ("https", "ssh", "git", "file") if p != protocol)

    with pytest.raises(GitError, match=f"protocol '{protocol}' is not allowed"):
        git.validate_url(url, allowed)


@pytest.mark.parametrize("url", ["", "relative/path", "https://example.com/a b", "https://x/\nrepo"])
def test_unusable_url_is_rejected(url: str) -> None:
    with pytest.raises(GitError):
        git.validate_url(url)


def test_file_remote_is_refused_when_only_https_is_allowed(demo_repo: Path) -> None:
    with pytest.raises(GitError, match="protocol 'file' is not allowed"):
        git.resolve_ref(str(demo_repo), "main", allowed_protocols=("https",))


def test_credentials_in_the_url_never_appear_in_errors() -> None:
    # Nothing listens on port 1, so git fails and reports the URL.
    with pytest.raises(GitError) as caught:
        git.resolve_ref("https://deploy:s3cret-token@127.0.0.1:1/app.git", "main")

    assert "s3cret-token" not in str(caught.value)
    assert "https://127.0.0.1:1/app.git" in str(caught.value)


def test_checkout_yields_the_files_of_the_requested_commit(demo_repo: Path, tmp_path: Path, lines) -> None:
    sha = rev(demo_repo, "main~1")

    dest = git.checkout(str(demo_repo), sha, tmp_path / "checkout", log=lines)

    assert rev(dest, "HEAD") == sha
    assert "Version 1" in (dest / "www" / "index.html").read_text()
    assert (dest / "busybox").stat().st_size > 100_000
    assert lines[0] == f"Fetching {sha[:12]} from {demo_repo}"
    assert lines[-1] == f"Checked out {sha} (Add the demo web app)"


def test_checkout_fetches_only_the_commit_to_build(demo_repo: Path, tmp_path: Path) -> None:
    dest = git.checkout(f"file://{demo_repo}", rev(demo_repo, "main"), tmp_path / "checkout")
    shallow = subprocess.run(
        ["git", "-C", str(dest), "rev-parse", "--is-shallow-repository"], capture_output=True, text=True
    )
    assert shallow.stdout.strip() == "true"
    assert (dest / "www" / "index.html").read_text().count("Version 2") == 1


def test_commit_time_is_the_committer_date_of_the_checked_out_commit(demo_repo: Path, tmp_path: Path) -> None:
    sha = rev(demo_repo, "main~1")
    dest = git.checkout(str(demo_repo), sha, tmp_path / "checkout")
    expected = subprocess.run(
        ["git", "-C", str(demo_repo), "log", "-1", "--format=%ct", sha], capture_output=True, text=True
    ).stdout.strip()

    committed = git.commit_time(dest, sha)

    assert committed.tzinfo is not None
    assert int(committed.timestamp()) == int(expected)


def test_history_cache_keeps_history_without_checking_anything_out(demo_repo: Path, tmp_path: Path) -> None:
    old, new = rev(demo_repo, "main~1"), rev(demo_repo, "main")

    dest = history.history_cache(tmp_path / "history", f"file://{demo_repo}", [new])
    assert not (dest / "www").exists()

    commits = history.commits_between(dest, old, new)
    assert [(c["sha"], c["subject"], c["author"]) for c in commits] == [
        (new, "Show version 2 on the home page", "Shipmate Demo")
    ]
    assert commits[0]["date"][:2] == "20"
    assert [c["sha"] for c in history.commits_between(dest, None, new)] == [new, old]
    assert history.is_ancestor(dest, old, new)
    assert not history.is_ancestor(dest, new, old)


def test_commit_from_another_branch_is_fetched_on_demand_for_the_change_list(
    demo_repo: Path, tmp_path: Path
) -> None:
    main = rev(demo_repo, "main")
    subprocess.run(["git", "-C", str(demo_repo), "checkout", "-q", "-b", "other", "main~1"], check=True)
    other = add_commit(demo_repo, "Work on another branch", {"OTHER": "x"})
    dest = history.history_cache(tmp_path / "history", str(demo_repo), [main])

    assert [c["sha"] for c in history.commits_between(dest, other, main)] == [main]
    assert not history.is_ancestor(dest, other, main)


def test_commit_unknown_to_the_remote_gives_an_empty_change_list(demo_repo: Path, tmp_path: Path) -> None:
    main = rev(demo_repo, "main")
    dest = history.history_cache(tmp_path / "history", str(demo_repo), [main])

    assert history.commits_between(dest, "1" * 40, main) == []
    assert not history.is_ancestor(dest, "1" * 40, main)


def test_fetch_commit_makes_a_commit_available_in_a_repository(demo_repo: Path, tmp_path: Path) -> None:
    sha = rev(demo_repo, "main~1")
    repo = tmp_path / "bare"
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)

    git.fetch_commit(repo, f"file://{demo_repo}", sha)

    assert rev(repo, f"{sha}^{{commit}}") == sha
    with pytest.raises(GitError, match="could not fetch|not reachable"):
        git.fetch_commit(repo, f"file://{demo_repo}", "2" * 40)


def test_checkout_refuses_a_non_empty_folder(demo_repo: Path, tmp_path: Path) -> None:
    (tmp_path / "checkout").mkdir()
    (tmp_path / "checkout" / "stale").write_text("x")

    with pytest.raises(GitError, match="not empty"):
        git.checkout(str(demo_repo), rev(demo_repo, "main"), tmp_path / "checkout")


def test_checkout_stops_when_cancelled(demo_repo: Path, tmp_path: Path) -> None:
    with pytest.raises(Cancelled):
        git.checkout(str(demo_repo), rev(demo_repo, "main"), tmp_path / "checkout", should_stop=lambda: True)


def test_checkout_of_a_commit_that_does_not_exist_fails(demo_repo: Path, tmp_path: Path) -> None:
    with pytest.raises(GitError, match="could not fetch|not reachable"):
        git.checkout(str(demo_repo), "0" * 40, tmp_path / "checkout")


def test_path_inside_the_repository_resolves(demo_repo: Path) -> None:
    assert git.safe_subpath(demo_repo, "www/index.html") == (demo_repo / "www" / "index.html").resolve()
    assert git.safe_subpath(demo_repo, ".", what="Build context") == demo_repo.resolve()


@pytest.mark.parametrize("rel", ["../x", "www/../../x", "/etc/passwd"])
def test_dockerfile_path_outside_the_repository_is_rejected(demo_repo: Path, rel: str) -> None:
    (demo_repo.parent / "x").write_text("FROM scratch")

    with pytest.raises(StageError, match=f"Dockerfile path '{rel}' is outside the repository"):
        git.safe_subpath(demo_repo, rel)


def test_symlink_escaping_the_repository_is_rejected(demo_repo: Path) -> None:
    os.symlink("/etc", demo_repo / "escape")
    os.symlink("www/index.html", demo_repo / "inside")

    with pytest.raises(StageError, match="is outside the repository"):
        git.safe_subpath(demo_repo, "escape/passwd")
    assert git.safe_subpath(demo_repo, "inside") == (demo_repo / "www" / "index.html").resolve()


def test_missing_dockerfile_is_reported(demo_repo: Path) -> None:
    with pytest.raises(StageError, match="'docker/Dockerfile' does not exist in the repository"):
        git.safe_subpath(demo_repo, "docker/Dockerfile")
