"""Commit history for people: which commits a deployment brings, and whether a ref is
older than what an environment runs. Works in a blobless cache repository per
application repository, so nothing is checked out."""

from __future__ import annotations

import fcntl
from collections.abc import Sequence
from pathlib import Path

from .git import DEFAULT_PROTOCOLS, SHA_RE, GitError, fetch_commit, has_commit, run_git


def commits_between(path: Path, old_sha: str | None, new_sha: str, limit: int = 50) -> list[dict[str, str]]:
    """Commits in `old..new`, newest first; with no `old`, the last `limit` commits of `new`.

    In a blobless clone (what `history_cache` makes) git fetches a missing commit from
    origin on demand, so `old` may come from another branch. Returns [] when a commit
    cannot be found (unknown to origin, or a shallow checkout).
    """
    for value in (old_sha, new_sha):
        if value is not None and not SHA_RE.match(value):
            raise GitError(f"'{value}' is not a full commit SHA.")
    if not has_commit(path, new_sha) or (old_sha and not has_commit(path, old_sha)):
        return []
    revs = f"{old_sha}..{new_sha}" if old_sha else new_sha
    result = run_git(
        ["log", f"--max-count={int(limit)}", "--format=%H%x1f%an%x1f%aI%x1f%s%x1e", revs, "--"],
        cwd=path,
        check=False,
    )
    if result.returncode != 0:
        return []
    commits = []
    for record in result.stdout.split("\x1e"):
        fields = record.strip("\n").split("\x1f")
        if len(fields) == 4:
            commits.append(dict(zip(("sha", "author", "date", "subject"), fields, strict=True)))
    return commits


def is_ancestor(path: Path, ancestor: str, descendant: str) -> bool:
    """True if `ancestor` is in the history of `descendant`; False also when either is unknown."""
    if not (SHA_RE.match(ancestor) and SHA_RE.match(descendant)):
        return False
    result = run_git(["merge-base", "--is-ancestor", ancestor, descendant], cwd=path, check=False)
    return result.returncode == 0


def history_cache(
    cache: Path, url: str, shas: Sequence[str], *, allowed_protocols: Sequence[str] = DEFAULT_PROTOCOLS
) -> Path:
    """A blobless repository at `cache` holding the given commits and their history:
    enough to compare and list commits without checking anything out."""
    cache.mkdir(parents=True, exist_ok=True)
    # The web process and several workers may fetch into one cache at once; git's own
    # ref locks would make the losers fail, so they take turns.
    with open(cache.parent / f".{cache.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (cache / ".git").exists():
            run_git(["init", "-q", "--", str(cache)], allowed_protocols=allowed_protocols)
        for sha in shas:
            fetch_commit(cache, url, sha, allowed_protocols=allowed_protocols)
    return cache


def is_older(
    url: str,
    candidate: str,
    current: str,
    cache: Path,
    *,
    allowed_protocols: Sequence[str] = DEFAULT_PROTOCOLS,
) -> bool:
    """True when `candidate` is a strict ancestor of `current`: deploying it would
    put older code in place."""
    if candidate == current:
        return False
    history_cache(cache, url, [candidate, current], allowed_protocols=allowed_protocols)
    return is_ancestor(cache, candidate, current)
