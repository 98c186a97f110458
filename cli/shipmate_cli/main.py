"""`shipmate`: deploy, approve and follow Shipmate deployments from a terminal.

Exit codes: 0 succeeded (or done), 1 the deployment failed, was rolled back, cancelled
or rejected, 2 refused (any 4xx from the API, or the server cannot be reached),
3 still not finished when --wait/--follow timed out (awaiting approval, say)."""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import click
import httpx

from . import config
from .client import FAILED, REFUSED, SUCCEEDED, TIMED_OUT, Api, Failure, error_message, unreachable
from .follow import follow

FINISHED = {"succeeded", "failed", "cancelled", "rolled_back", "rejected"}
POLL_EVERY = 1.0


class State:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self._api: Api | None = None

    @property
    def api(self) -> Api:
        if self._api is None:
            settings = config.load()
            if not settings.get("url") or not settings.get("token"):
                raise Failure(
                    "Not logged in: run `shipmate login URL` (or set SHIPMATE_URL and SHIPMATE_TOKEN)."
                )
            self._api = Api(settings["url"], settings["token"])
        return self._api


pass_state = click.make_pass_decorator(State)


def note(message: str) -> None:
    click.echo(message, err=True)


def emit(state: State, body: Any, text: str) -> None:
    click.echo(json.dumps(body, indent=2) if state.as_json else text)


def table(rows: list[list[str]], headers: list[str]) -> str:
    cells = [headers, *rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def when(value: str | None) -> str:
    if not value:
        return "-"
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


def summary(d: dict[str, Any]) -> str:
    commit = (d.get("commit_sha") or "")[:7] or "-"
    line = f"#{d['id']} {d['application']} {d['ref']} ({commit}) → {d['environment']}: {d['status']}"
    return line + (f" — {d['error']}" if d.get("error") else "")


def outcome(status: str | None) -> int:
    if status == "succeeded":
        return SUCCEEDED
    if status in FINISHED:
        return FAILED
    return TIMED_OUT


@click.group()
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON objects.")
@click.pass_context
def cli(ctx: click.Context, as_json: bool) -> None:
    """Shipmate from a terminal. `shipmate login URL` first."""
    ctx.obj = State(as_json)


@cli.command()
@click.argument("url")
@click.option("--token", help="A personal access token (shp_…); prompted for when not given.")
def login(url: str, token: str | None) -> None:
    """Check a token against URL and keep both for the other commands."""
    token = token or click.prompt("Token", hide_input=True)
    url = url.rstrip("/")
    try:
        response = httpx.get(
            f"{url}/api/v1/environments/", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
    except httpx.TransportError as exc:
        raise unreachable(url, exc) from None
    if response.is_error:
        raise Failure(error_message(response))
    path = config.save(url, token)
    click.echo(f"Logged in to {url} ({len(response.json())} environment(s) visible). Saved to {path}.")


@cli.command()
@pass_state
def apps(state: State) -> None:
    """What runs where: each application in each environment."""
    placements = state.api.get("placements/")
    rows = []
    for p in placements:
        d = p.get("current") or {}
        rows.append([
            p["application"], p["environment"], d.get("ref") or "-", (d.get("commit_sha") or "")[:7] or "-",
            d.get("status") or "never deployed", d.get("requested_by") or "-", when(d.get("finished_at")),
        ])  # fmt: skip
    headers = ["APPLICATION", "ENVIRONMENT", "REF", "COMMIT", "STATUS", "DEPLOYED BY", "WHEN"]
    emit(state, placements, table(rows, headers))


@cli.command()
@pass_state
def envs(state: State) -> None:
    """Environments: locked, frozen, protected (needs approval)."""
    environments = state.api.get("environments/")
    rows = []
    for e in environments:
        locked = f"yes ({e['locked_by']}: {e['locked_reason']})" if e["is_locked"] else "no"
        protected = f"yes ({e['approvals_required']} approval(s))" if e["requires_approval"] else "no"
        rows.append([e["name"], e["target_kind"], locked, "yes" if e["is_frozen"] else "no", protected])
    emit(state, environments, table(rows, ["NAME", "TARGET", "LOCKED", "FROZEN", "PROTECTED"]))


def _finish(state: State, deployment: dict[str, Any], follow_log: bool, wait: bool, timeout: float) -> None:
    """After a deployment was made: print it, or follow it / wait for it and exit with its outcome."""
    if not (follow_log or wait):
        emit(
            state,
            deployment,
            f"{summary(deployment)}\nFollow it with `shipmate logs {deployment['id']} --follow`.",
        )
        return
    note(summary(deployment))
    deadline = time.monotonic() + timeout if timeout else None
    api, pk = state.api, deployment["id"]
    if follow_log:
        out = sys.stderr.buffer if state.as_json else sys.stdout.buffer
        follow(api, pk, out, note, deadline)
    while True:
        deployment = api.get(f"deployments/{pk}/")
        if deployment["status"] in FINISHED or (deadline is not None and time.monotonic() > deadline):
            break
        time.sleep(POLL_EVERY)
    code = outcome(deployment["status"])
    if code == TIMED_OUT:
        note(f"Timed out after {timeout:g} s: #{pk} is {deployment['status']}.")
    if follow_log and not state.as_json:
        note(summary(deployment))  # stdout holds the log alone
    else:
        emit(state, deployment, summary(deployment))
    sys.exit(code)


follow_options = [
    click.option(
        "--follow", "follow_log", is_flag=True, help="Print the log as it comes; exit with the outcome."
    ),
    click.option("--wait", is_flag=True, help="Wait for the outcome and exit with it."),
    click.option(
        "--timeout", type=float, default=0, help="Give up after this many seconds (exit 3); 0: never."
    ),
]


def with_follow_options(command: Any) -> Any:
    for option in reversed(follow_options):
        command = option(command)
    return command


@cli.command()
@click.argument("app")
@click.argument("ref")
@click.argument("env")
@with_follow_options
@click.option(
    "--break-glass", "break_glass", default="", help="Deploy despite a lock or freeze, with this reason."
)
@click.option("--confirm-older", is_flag=True, help="Deploy even if REF is older than what runs.")
@pass_state
def deploy(
    state: State, app: str, ref: str, env: str, follow_log: bool, wait: bool, timeout: float,
    break_glass: str, confirm_older: bool,
) -> None:  # fmt: skip
    """Deploy REF of APP to ENV."""
    body: dict[str, Any] = {"application": app, "environment": env, "ref": ref}
    body |= {"break_glass_reason": break_glass, "confirm_older": confirm_older}
    _finish(state, state.api.post("deployments/", body), follow_log, wait, timeout)


@cli.command()
@click.argument("app")
@click.argument("env")
@with_follow_options
@pass_state
def rollback(state: State, app: str, env: str, follow_log: bool, wait: bool, timeout: float) -> None:
    """Ship APP's previous good image again in ENV."""
    _finish(
        state, state.api.post(f"environments/{env}/rollback", {"application": app}), follow_log, wait, timeout
    )


@cli.command()
@click.argument("pk", metavar="ID", type=int)
@click.option("--follow", "follow_log", is_flag=True, help="Follow the live log until the deployment ends.")
@pass_state
def logs(state: State, pk: int, follow_log: bool) -> None:
    """Print a deployment's log (colours kept)."""
    out = sys.stdout.buffer
    if follow_log:
        status = follow(state.api, pk, out, note)
        sys.exit(outcome(status))
    after = ""
    while True:
        page = state.api.get(f"deployments/{pk}/log", after=after, limit=5000)
        for line in page["lines"]:
            out.write(line["text"].encode() + b"\n")
        if page["next_after"] is None:
            break
        after = page["next_after"]
    out.flush()


@cli.command()
@click.argument("pk", metavar="ID", type=int)
@pass_state
def status(state: State, pk: int) -> None:
    """A deployment's state and stages; exits 1 if it failed, was cancelled, rolled back or rejected."""
    d = state.api.get(f"deployments/{pk}/")
    stages = "\n".join(f"  {s['name']}: {s['status']}" for s in d["stages"])
    emit(state, d, summary(d) + (f"\n{stages}" if stages else ""))
    sys.exit(FAILED if outcome(d["status"]) == FAILED else SUCCEEDED)


def _decide(state: State, pk: int, action: str, data: dict[str, Any] | None = None) -> None:
    emit(state, d := state.api.post(f"deployments/{pk}/{action}", data), summary(d))


@cli.command()
@click.argument("pk", metavar="ID", type=int)
@click.option("--comment", default="", help="Recorded with the approval.")
@pass_state
def approve(state: State, pk: int, comment: str) -> None:
    """Approve a deployment that awaits approval."""
    _decide(state, pk, "approve", {"comment": comment})


@cli.command()
@click.argument("pk", metavar="ID", type=int)
@click.option("--comment", default="", help="Recorded with the rejection.")
@pass_state
def reject(state: State, pk: int, comment: str) -> None:
    """Reject a deployment that awaits approval."""
    _decide(state, pk, "reject", {"comment": comment})


@cli.command()
@click.argument("pk", metavar="ID", type=int)
@pass_state
def cancel(state: State, pk: int) -> None:
    """Cancel a deployment that has not finished."""
    _decide(state, pk, "cancel")


_DURATION = re.compile(r"(\d+)([smhd])")


def expiry(value: str | None) -> str | None:
    """`2h`, `30m`, `1d` from now, or an ISO 8601 date and time."""
    if not value:
        return None
    if match := _DURATION.fullmatch(value):
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match[2]]
        return (datetime.now(UTC) + timedelta(**{unit: int(match[1])})).isoformat()
    try:
        return datetime.fromisoformat(value).isoformat()
    except ValueError:
        raise click.BadParameter("use a duration such as 2h or an ISO date and time") from None


@cli.command()
@click.argument("env")
@click.option("--reason", required=True, help="Shown to everyone the lock holds back.")
@click.option("--expires", help="When the lock lifts by itself: 2h, 30m, 1d or an ISO date and time.")
@pass_state
def lock(state: State, env: str, reason: str, expires: str | None) -> None:
    """Lock an environment: nothing deploys there until it is unlocked."""
    e = state.api.post(f"environments/{env}/lock", {"reason": reason, "expires_at": expiry(expires)})
    until = f" until {when(e['lock_expires_at'])}" if e["lock_expires_at"] else ""
    emit(state, e, f"{e['name']} locked by {e['locked_by']}{until}: {e['locked_reason']}")


@cli.command()
@click.argument("env")
@pass_state
def unlock(state: State, env: str) -> None:
    """Lift an environment's lock."""
    e = state.api.post(f"environments/{env}/unlock")
    emit(state, e, f"{e['name']} unlocked")


def main() -> None:
    try:
        cli(prog_name="shipmate")
    except KeyboardInterrupt:
        sys.exit(130)


__all__ = ["cli", "main", "REFUSED"]
