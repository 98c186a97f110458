"""Hardened git through the git CLI: validate user input, resolve refs, fetch one commit.

Every call runs git with an argument list (never a shell), a protocol allowlist, no
terminal prompts, no system config, no hooks and a timeout. URLs and refs come from
users, so both are validated before git sees them and `--` separates them from options
wherever git accepts it.

Network remotes go through the outbound guard (outbound.py): before each git command
that may touch the network, the remote's host is resolved and checked against the
outbound policy, and git is made to connect to exactly the checked address, so a DNS
answer that changes in between (rebinding) cannot move it:
- http(s): `-c http.curloptResolve=<host>:<port>:<ip>` pins curl's lookup, and
  `-c http.followRedirects=false` keeps git on the checked host;
- ssh: `-o HostName=<ip>` (known_hosts still checked for the name, `HostKeyAlias`),
  and `ProxyCommand`/`ProxyJump` off so no ssh config can route elsewhere;
- git://: a `url.<ip>.insteadOf=<host>` rewrite for this one command.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .base import Cancelled, LogFn, StageError, StopFn, never_stop
from .outbound import OutboundError, OutboundPolicy, OutboundRefused, parse_ip_literal, resolve_checked

DEFAULT_PROTOCOLS: tuple[str, ...] = ("https", "ssh", "git", "file")
NETWORK_TIMEOUT = 300.0
LOCAL_TIMEOUT = 60.0

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# `transport::address` selects a remote helper (ext::, fd::, …): never allowed.
_HELPER_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::")
# Git reads `[user@]host:path` as ssh when the colon comes before any slash.
_SCP_RE = re.compile(r"^(?:[^@/:]+@)?(\[[^\]]+\]|[^/:]+):")
_CREDENTIALS_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")
_HEX_RE = re.compile(r"^[0-9a-fA-F]{4,40}$")
SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_SCHEME_ALIASES = {"git+ssh": "ssh", "ssh+git": "ssh"}
_HOST_NAME_RE = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_.])?$")
DEFAULT_PORTS = {"http": 80, "https": 443, "ssh": 22, "git": 9418}


class GitError(StageError):
    """A git command failed or its input was refused; the message is safe to show."""


class GitRefused(GitError, OutboundRefused):
    """The outbound policy refuses the address a remote's host names or resolves to."""


@dataclass(frozen=True)
class Remote:
    """Where a network URL connects: as git (and ssh, and curl) read it."""

    protocol: str
    user: str
    host: str  # without IPv6 brackets
    port: str  # as written; "" for the protocol's default
    authority: str  # [user@]host[:port] as written


def redact_url(text: str) -> str:
    """Drop `user:password@` from every URL in `text` so tokens never reach a log."""
    return _CREDENTIALS_RE.sub(r"\1", text)


def _has_unsafe_chars(value: str) -> bool:
    return any(ord(c) <= 0x20 or ord(c) == 0x7F for c in value)


def url_protocol(url: str) -> str:
    """The protocol git would use for `url`, as named in GIT_ALLOW_PROTOCOL."""
    match = _SCHEME_RE.match(url)
    if match:
        scheme = match.group(1).lower()
        return _SCHEME_ALIASES.get(scheme, scheme)
    if _HELPER_RE.match(url):
        return url.split("::", 1)[0].lower()
    if url.startswith("/"):
        return "file"
    if _SCP_RE.match(url):
        return "ssh"
    return "relative"


def validate_url(
    url: str, allowed_protocols: Sequence[str] = DEFAULT_PROTOCOLS, *, policy: OutboundPolicy | None = None
) -> None:
    """Refuse what git must never see. The Manage forms, the Django admin and the YAML
    apply call this too (models/repository.py), so a URL the worker would refuse is
    refused when it is saved. With `policy`, a host that is an IP literal (or a
    localhost name) is judged as well; DNS names are judged when the worker connects."""
    if not url:
        raise GitError("The git URL is empty.")
    if url.startswith("-"):
        raise GitError("A git URL must not start with '-'.")
    if _has_unsafe_chars(url):
        raise GitError("A git URL must not contain spaces or control characters.")
    protocol = url_protocol(url)
    shown = redact_url(url)
    if _HELPER_RE.match(url) and not _SCHEME_RE.match(url):
        raise GitError(f"The git transport '{protocol}::' is not allowed in {shown}.")
    if protocol == "relative":
        raise GitError(f"'{shown}' is not a URL or an absolute path.")
    if protocol not in allowed_protocols:
        allowed = ", ".join(allowed_protocols) or "none"
        raise GitError(f"The protocol '{protocol}' is not allowed (allowed: {allowed}).")
    remote = parse_remote(url)
    if remote is None:
        return
    _check_remote(remote, shown)
    if policy is not None:
        try:
            policy.check_host_literal(_host_of(remote))
        except OutboundRefused as exc:
            raise GitRefused(str(exc)) from None


def parse_remote(url: str) -> Remote | None:
    """The host part of a network URL (scheme or scp-like); None for local paths."""
    protocol = url_protocol(url)
    if protocol not in DEFAULT_PORTS:
        return None
    match = _SCHEME_RE.match(url)
    if match:
        authority = url[match.end() :].split("/", 1)[0]
    else:
        scp = _SCP_RE.match(url)
        authority = scp.group(0)[:-1] if scp else ""
    user, _, hostport = authority.rpartition("@")
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else rest
        host = f"[{host}"  # kept bracketed until checked
    elif match:
        host, _, port = hostport.partition(":")
    else:
        host, port = hostport, ""
    return Remote(protocol, user, host, port, authority)


def _check_remote(remote: Remote, shown: str) -> None:
    # A host or user beginning with '-' would reach ssh as an option (CVE-2017-1000117).
    if remote.host.lstrip("[").startswith("-"):
        raise GitError(f"The host in {shown} must not start with '-'.")
    if remote.user.startswith("-"):
        raise GitError(f"The user name in {shown} must not start with '-'.")
    if any(c in remote.authority for c in "?#\\"):
        raise GitError(f"The host part of {shown} must not contain '?', '#' or '\\'.")
    if remote.host.startswith("["):
        try:
            ipaddress.IPv6Address(remote.host[1:].split("%", 1)[0])
        except ValueError:
            raise GitError(f"The host in {shown} is not a valid IPv6 address.") from None
    elif not remote.host:
        raise GitError(f"{shown} names no host.")
    elif not _HOST_NAME_RE.match(remote.host):
        raise GitError(f"The host in {shown} is not a valid host name.")
    if remote.port and not (remote.port.isdigit() and 0 < int(remote.port) < 65536):
        raise GitError(f"The port in {shown} is not a valid port.")


def _host_of(remote: Remote) -> str:
    return remote.host[1:] if remote.host.startswith("[") else remote.host


def network_options(url: str, policy: OutboundPolicy | None = None) -> tuple[list[str], dict[str, str]]:
    """The `-c` options and environment that make one git command connect only to the
    checked address of `url`'s host; GitRefused when the policy refuses it. Nothing for
    local paths and file:// URLs."""
    remote = parse_remote(url)
    if remote is None:
        return [], {}
    _check_remote(remote, redact_url(url))
    host = _host_of(remote)
    port = int(remote.port) if remote.port else DEFAULT_PORTS[remote.protocol]
    try:
        addresses = resolve_checked(host, port, policy=policy)
    except OutboundRefused as exc:
        raise GitRefused(str(exc)) from None
    except OutboundError as exc:
        raise GitError(str(exc)) from None
    named = parse_ip_literal(host) is None
    if remote.protocol in ("http", "https"):
        options = ["-c", "http.followRedirects=false"]
        if named:
            pinned = ",".join(f"[{a}]" if ":" in a else a for a in addresses)
            options += ["-c", f"http.curloptResolve={host}:{port}:{pinned}"]
        return options, {}
    address = addresses[0]
    if remote.protocol == "ssh":
        base = os.environ.get("GIT_SSH_COMMAND", SSH_COMMAND)
        extra = ["-o", f"HostName={address}", "-o", "ProxyCommand=none", "-o", "ProxyJump=none"]
        if named:
            # known_hosts is still checked for the name the user gave, not the address.
            extra += ["-o", f"HostKeyAlias={host}", "-o", "CheckHostIP=no"]
        return [], {"GIT_SSH_COMMAND": " ".join([base, *map(shlex.quote, extra)])}
    pinned_host = f"[{address}]" if ":" in address else address
    return ["-c", f"url.git://{pinned_host}:{port}/.insteadOf=git://{remote.authority}/"], {}


def validate_ref(ref: str) -> None:
    if not ref:
        raise GitError("The ref is empty.")
    if ref.startswith("-"):
        raise GitError(f"The ref '{ref}' must not start with '-'.")
    if _has_unsafe_chars(ref):
        raise GitError("A ref must not contain spaces or control characters.")
    if ".." in ref:
        raise GitError(f"The ref '{ref}' must not contain '..'.")
    result = subprocess.run(
        ["git", "check-ref-format", "--allow-onelevel", ref],
        env=git_env(DEFAULT_PROTOCOLS),
        capture_output=True,
        timeout=LOCAL_TIMEOUT,
    )
    if result.returncode != 0:
        raise GitError(f"'{ref}' is not a valid git ref name.")


# BatchMode makes ssh fail instead of asking for a password or host key.
SSH_COMMAND = "ssh -o BatchMode=yes"


def git_env(allowed_protocols: Sequence[str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_ALLOW_PROTOCOL=":".join(allowed_protocols),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_ASKPASS="/bin/true",
        SSH_ASKPASS="/bin/true",
        GIT_SSH_COMMAND=os.environ.get("GIT_SSH_COMMAND", SSH_COMMAND),
        LC_ALL="C",
    )
    return env


_SAFE_CONFIG = ["-c", "core.hooksPath=/dev/null", "-c", "advice.detachedHead=false", "-c", "core.fsmonitor="]


def run_git(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    allowed_protocols: Sequence[str] = DEFAULT_PROTOCOLS,
    timeout: float = LOCAL_TIMEOUT,
    should_stop: StopFn = never_stop,
    check: bool = True,
    remote: str | None = None,
    policy: OutboundPolicy | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run git; with `remote` (the URL this command may fetch from), only after its host
    passed the outbound policy, and pinned to the checked address."""
    options, extra_env = network_options(remote, policy) if remote else ([], {})
    cmd = ["git", *_SAFE_CONFIG, *options, *args]
    # A new session lets us kill git together with the helpers it spawned (ssh, upload-pack).
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env={**git_env(allowed_protocols), **extra_env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    waited = 0.0
    while True:
        try:
            out, err = proc.communicate(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            waited += 0.2
            if should_stop():
                _kill(proc)
                raise Cancelled() from None
            if waited >= timeout:
                _kill(proc)
                raise GitError(f"git {args[0]} timed out after {timeout:g} s") from None
    result = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    if check and proc.returncode != 0:
        raise GitError(f"git {args[0]} failed: {_summary(err)}")
    return result


def _kill(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


def _summary(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith("hint:")]
    # The last lines carry git's actual complaint; earlier ones are progress.
    text = " / ".join(lines[-3:]) or "no error output"
    return redact_url(text)[:500]


def resolve_ref(
    url: str,
    ref: str,
    *,
    allowed_protocols: Sequence[str] = DEFAULT_PROTOCOLS,
    log: LogFn = lambda line: None,
    should_stop: StopFn = never_stop,
    policy: OutboundPolicy | None = None,
) -> str:
    """Resolve a branch, tag, full ref or (abbreviated) commit SHA to a full commit SHA.
    `policy`: the outbound policy (None: outbound.current_policy())."""
    validate_url(url, allowed_protocols)
    validate_ref(ref)
    shown = redact_url(url)
    listing = run_git(
        ["ls-remote", "--", url],
        allowed_protocols=allowed_protocols,
        timeout=NETWORK_TIMEOUT,
        should_stop=should_stop,
        remote=url,
        policy=policy,
    ).stdout
    refs: dict[str, str] = {}
    for line in listing.splitlines():
        sha, _, name = line.partition("\t")
        refs[name] = sha
    found = _match_ref(refs, ref, log)
    if found:
        log(f"Resolved {ref} to {found}")
        return found
    if _HEX_RE.match(ref):
        lowered = ref.lower()
        if len(lowered) == 40 and lowered in refs.values():
            return lowered
        found = _resolve_commit_by_fetch(url, lowered, allowed_protocols, should_stop, policy)
        if found:
            log(f"Resolved {ref} to {found}")
            return found
    raise GitError(f"ref '{ref}' does not exist in {shown}")


def _match_ref(refs: dict[str, str], ref: str, log: LogFn) -> str | None:
    def peeled(name: str) -> str | None:
        # An annotated tag's own object is not a commit; `^{}` is what it points at.
        return refs.get(name + "^{}") or refs.get(name)

    if ref == "HEAD" or ref.startswith("refs/"):
        return peeled(ref)
    # Same order as git rev-parse: tags win over branches.
    tag, branch = peeled(f"refs/tags/{ref}"), peeled(f"refs/heads/{ref}")
    if tag and branch and tag != branch:
        log(f"'{ref}' is both a tag and a branch; using the tag")
    return tag or branch


def _resolve_commit_by_fetch(
    url: str,
    abbrev: str,
    allowed_protocols: Sequence[str],
    should_stop: StopFn,
    policy: OutboundPolicy | None,
) -> str | None:
    with tempfile.TemporaryDirectory(prefix="shipmate-resolve-") as tmp:
        repo = Path(tmp)
        run_git(["init", "-q", "--bare", "--", str(repo)], allowed_protocols=allowed_protocols)
        run_git(["remote", "add", "origin", "--", url], cwd=repo, allowed_protocols=allowed_protocols)
        common = ["fetch", "-q", "--no-tags", "--filter=tree:0", "origin"]
        if len(abbrev) == 40:
            # Commits not under any ref (yet reachable) can only be fetched by exact id.
            fetched = run_git(
                [*common, abbrev],
                cwd=repo,
                allowed_protocols=allowed_protocols,
                timeout=NETWORK_TIMEOUT,
                should_stop=should_stop,
                check=False,
                remote=url,
                policy=policy,
            )
            if fetched.returncode == 0:
                return abbrev if has_commit(repo, abbrev, url=url, policy=policy) else None
        run_git(
            [*common, "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"],
            cwd=repo,
            allowed_protocols=allowed_protocols,
            timeout=NETWORK_TIMEOUT,
            should_stop=should_stop,
            remote=url,
            policy=policy,
        )
        found = run_git(
            ["rev-parse", "--verify", "--quiet", "--end-of-options", abbrev + "^{commit}"],
            cwd=repo,
            check=False,
        )
        sha = found.stdout.strip()
        return sha if found.returncode == 0 and SHA_RE.match(sha) else None


def has_commit(
    repo: Path,
    sha: str,
    *,
    allowed_protocols: Sequence[str] = DEFAULT_PROTOCOLS,
    should_stop: StopFn = never_stop,
    url: str | None = None,
    policy: OutboundPolicy | None = None,
) -> bool:
    # In a partial clone a missing object is fetched from origin on demand: a network
    # call, so origin's host is checked and pinned like any other fetch.
    remote = url or _origin_url(repo)
    result = run_git(
        ["cat-file", "-e", "--end-of-options", sha + "^{commit}"],
        cwd=repo,
        allowed_protocols=allowed_protocols,
        timeout=NETWORK_TIMEOUT,
        should_stop=should_stop,
        check=False,
        remote=remote or None,
        policy=policy,
    )
    return result.returncode == 0


def _origin_url(repo: Path) -> str:
    found = run_git(["config", "--get", "remote.origin.url"], cwd=repo, check=False)
    return found.stdout.strip() if found.returncode == 0 else ""


def checkout(
    url: str,
    sha: str,
    dest: Path,
    *,
    allowed_protocols: Sequence[str] = DEFAULT_PROTOCOLS,
    log: LogFn = lambda line: None,
    should_stop: StopFn = never_stop,
    policy: OutboundPolicy | None = None,
) -> Path:
    """Fetch only commit `sha` (shallow: its tree, no history) into `dest` and check it out."""
    validate_url(url, allowed_protocols)
    if not SHA_RE.match(sha):
        raise GitError(f"'{sha}' is not a full commit SHA.")
    if dest.exists() and any(dest.iterdir()):
        raise GitError(f"Checkout folder {dest} is not empty.")
    dest.mkdir(parents=True, exist_ok=True)
    shown = redact_url(url)
    run_git(["init", "-q", "--", str(dest)], allowed_protocols=allowed_protocols)
    log(f"Fetching {sha[:12]} from {shown}")
    fetch_commit(
        dest,
        url,
        sha,
        allowed_protocols=allowed_protocols,
        should_stop=should_stop,
        shallow=True,
        policy=policy,
    )
    if should_stop():
        raise Cancelled()
    # Blobs arrive now, lazily from the promisor remote, hence the network timeout.
    run_git(
        ["checkout", "-q", "--detach", sha, "--"],
        cwd=dest,
        allowed_protocols=allowed_protocols,
        timeout=NETWORK_TIMEOUT,
        should_stop=should_stop,
        remote=url,
        policy=policy,
    )
    head = run_git(["rev-parse", "HEAD"], cwd=dest).stdout.strip()
    if head != sha:
        raise GitError(f"Checked out {head} but expected {sha}.")
    subject = run_git(["log", "-1", "--format=%s", sha, "--"], cwd=dest).stdout.strip()
    log(f"Checked out {sha} ({subject})" if subject else f"Checked out {sha}")
    return dest


def commit_time(repo: Path, sha: str) -> datetime:
    """The committer date of `sha` in `repo` (a rebase or merge moves it; the author date stays)."""
    stamp = run_git(["log", "-1", "--format=%cI", sha, "--"], cwd=repo).stdout.strip()
    return datetime.fromisoformat(stamp)


def fetch_commit(
    path: Path,
    url: str,
    sha: str,
    *,
    allowed_protocols: Sequence[str] = DEFAULT_PROTOCOLS,
    should_stop: StopFn = never_stop,
    shallow: bool = False,
    policy: OutboundPolicy | None = None,
) -> None:
    """Make commit `sha` of `url` present in the repository at `path`; GitError if it cannot.

    `shallow` is for a build: one pack with the tree and its blobs, no history.
    Otherwise the fetch is blobless, which keeps the history listable."""
    validate_url(url, allowed_protocols)
    if not SHA_RE.match(sha):
        raise GitError(f"'{sha}' is not a full commit SHA.")
    if has_commit(
        path, sha, allowed_protocols=allowed_protocols, should_stop=should_stop, url=url, policy=policy
    ):
        return
    # A named remote, because lazy blob fetches in a partial clone go to the promisor remote.
    current = run_git(["remote", "get-url", "origin"], cwd=path, check=False)
    if current.returncode != 0:
        run_git(["remote", "add", "origin", "--", url], cwd=path)
    elif current.stdout.strip() != url:
        run_git(["remote", "set-url", "origin", "--", url], cwd=path)
    base = ["fetch", "-q", "--no-tags", "--filter=blob:none", "origin"]
    depth_one = ["fetch", "-q", "--no-tags", "--depth=1", "origin", sha]
    attempts = [
        *([depth_one] if shallow else []),
        [*base, sha],
        # Servers that reject filters: a shallow fetch still gives the tree to build.
        depth_one,
        # Protocol v0 servers refuse unadvertised ids: fetch every branch and tag instead.
        [*base, "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"],
    ]
    errors = []
    for args in attempts:
        result = run_git(
            args,
            cwd=path,
            allowed_protocols=allowed_protocols,
            timeout=NETWORK_TIMEOUT,
            should_stop=should_stop,
            check=False,
            remote=url,
            policy=policy,
        )
        if result.returncode == 0 and has_commit(
            path, sha, allowed_protocols=allowed_protocols, url=url, policy=policy
        ):
            return
        if result.returncode != 0:
            errors.append(_summary(result.stderr))
    if errors:
        raise GitError(f"could not fetch {sha[:12]}: {errors[-1]}")
    raise GitError(f"commit {sha[:12]} is not reachable from any branch or tag")


def safe_subpath(root: Path, rel: str, *, what: str = "Dockerfile path") -> Path:
    """Resolve `rel` inside `root` (following symlinks); refuse anything that leaves it."""
    base = root.resolve(strict=True)
    if not rel or "\x00" in rel:
        raise StageError(f"{what} '{rel}' is not a valid path")
    target = (base / rel).resolve(strict=False)
    if target != base and base not in target.parents:
        raise StageError(f"{what} '{rel}' is outside the repository")
    if not target.exists():
        raise StageError(f"{what} '{rel}' does not exist in the repository")
    return target
