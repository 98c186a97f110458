"""What each channel kind sends, how a webhook is signed, and one attempt to send it
through the outbound guard. Plain Python: no request, no database, no Celery.

An event is a JSON-ready dict (built by `hooks.py`, documented in the README's
Notifications section); `build()` turns it into the request of one channel kind.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import re
import time
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from ..pipeline import outbound

WEBHOOK, SLACK, GITHUB, GITLAB = "webhook", "slack", "github", "gitlab"

SIGNATURE_HEADER = "X-Shipmate-Signature-256"
TIMESTAMP_HEADER = "X-Shipmate-Timestamp"
EVENT_HEADER = "X-Shipmate-Event"
DELIVERY_HEADER = "X-Shipmate-Delivery"

# Retried: the receiver may be back later. Any other answer outside 2xx is final: a
# wrong token or URL does not get better by asking again.
RETRY_STATUSES = frozenset({408, 425, 429}) | frozenset(range(500, 600))

GITHUB_STATES = {
    "requested": "pending",
    "awaiting_approval": "pending",
    "approved": "pending",
    "succeeded": "success",
    "failed": "failure",
    "rolled_back": "failure",
    "rejected": "failure",
    "cancelled": "error",
}
GITLAB_STATES = {
    "requested": "pending",
    "awaiting_approval": "pending",
    "approved": "running",
    "succeeded": "success",
    "failed": "failed",
    "rolled_back": "failed",
    "rejected": "failed",
    "cancelled": "canceled",
}
SLACK_COLOURS = {"succeeded": "good", "failed": "danger", "rolled_back": "danger", "rejected": "danger"}


@dataclass(frozen=True)
class Target:
    kind: str
    url: str  # webhook, slack: where to post; github, gitlab: the API base URL
    secret: str = ""  # webhook: the signing secret; github, gitlab: the token
    project: str = ""  # github: owner/repo; gitlab: group/project


@dataclass(frozen=True)
class Request:
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Result:
    status_code: int | None
    error: str
    duration: float  # seconds

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def retryable(self) -> bool:
        if self.status_code is None:
            return not self.error.startswith("Refused")
        return self.status_code in RETRY_STATUSES


class NotApplicable(Exception):
    """The event means nothing to this kind of channel (a lock has no commit)."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """`sha256=` + HMAC-SHA256 over `<timestamp>.<raw body>`: the timestamp is signed
    too, so a receiver that refuses old timestamps refuses replays."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def _json(data: object) -> bytes:
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


def project_from_git_url(git_url: str) -> str:
    """`owner/repo` (or `group/sub/project`) from https://host/owner/repo.git,
    ssh://git@host/owner/repo.git or git@host:owner/repo.git; "" if none."""
    match = re.match(r"^[\w.-]+@[\w.-]+:(?!//)(.+)$", git_url)
    path = match.group(1) if match else urlsplit(git_url).path
    path = path.strip("/")
    if path.endswith(".git"):
        path = path[:-4]
    return path if "/" in path else ""


def _api(target: Target, path: str) -> str:
    return target.url.rstrip("/") + path


def _commit_status(target: Target, event: dict[str, object]) -> Request:
    deployment = event.get("deployment")
    if not isinstance(deployment, dict) or not deployment.get("commit_sha"):
        raise NotApplicable("This event has no commit.")
    name = str(event["event"])
    sha = str(deployment["commit_sha"])
    context = f"shipmate/{event['environment']}"
    description = str(event["summary"])[:140]
    if target.kind == GITHUB:
        state = GITHUB_STATES.get(name) or GITHUB_STATES.get(str(deployment.get("status")), "pending")
        url = _api(target, f"/repos/{target.project}/statuses/{sha}")
        body = {"state": state, "context": context, "target_url": event["url"], "description": description}
        headers = {
            "Authorization": f"Bearer {target.secret}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }
    else:
        state = GITLAB_STATES.get(name) or GITLAB_STATES.get(str(deployment.get("status")), "running")
        url = _api(target, f"/projects/{quote(target.project, safe='')}/statuses/{sha}")
        body = {"state": state, "name": context, "target_url": event["url"], "description": description}
        headers = {"PRIVATE-TOKEN": target.secret}
    return Request(url, {"Content-Type": "application/json", **headers}, _json(body))


def _slack(target: Target, event: dict[str, object]) -> Request:
    deployment = event.get("deployment") if isinstance(event.get("deployment"), dict) else None
    fields = [
        {"title": "Application", "value": str(event.get("application") or "–"), "short": True},
        {"title": "Environment", "value": str(event.get("environment") or "–"), "short": True},
    ]
    if deployment:
        assert isinstance(deployment, dict)
        commit = str(deployment.get("commit_sha") or "")[:10] or "not resolved yet"
        fields.append({"title": "Ref", "value": f"{deployment.get('ref')} ({commit})", "short": True})
    if event.get("actor"):
        fields.append({"title": "By", "value": str(event["actor"]), "short": True})
    summary = str(event["summary"])
    body = {
        # `text` alone is what every Slack-compatible receiver shows; the attachment
        # (colour, link, fields) is understood by Slack, Mattermost and Rocket.Chat.
        "text": f"{summary} <{event['url']}|Open in Shipmate>",
        "attachments": [
            {
                "fallback": summary,
                "color": SLACK_COLOURS.get(str(event["event"]), "#439FE0"),
                "title": summary,
                "title_link": event["url"],
                "fields": fields,
            }
        ],
    }
    return Request(target.url, {"Content-Type": "application/json"}, _json(body))


def build(target: Target, event: dict[str, object], *, delivery_id: str, now: float | None = None) -> Request:
    """The request `target` gets for `event`. Raises NotApplicable."""
    if target.kind in (GITHUB, GITLAB):
        return _commit_status(target, event)
    if target.kind == SLACK:
        return _slack(target, event)
    body = _json({**event, "delivery": delivery_id})
    timestamp = int(now if now is not None else time.time())
    headers = {
        "Content-Type": "application/json",
        EVENT_HEADER: str(event["event"]),
        DELIVERY_HEADER: delivery_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(target.secret, timestamp, body),
    }
    return Request(target.url, headers, body)


def send(request: Request, *, timeout: float, policy: outbound.OutboundPolicy | None = None) -> Result:
    """One attempt: the guard checks the address at connect time; redirects are not
    followed; `timeout` bounds the whole attempt. Never raises for network trouble."""
    start = time.monotonic()
    status: int | None = None
    error = ""
    try:
        status, _ = outbound.http_post(
            request.url, request.body, headers=request.headers, timeout=timeout, policy=policy
        )
    except outbound.OutboundRefused as exc:
        error = f"Refused: {exc}"
    except outbound.DeadlineExceeded:
        error = f"Timed out after {timeout:g} s"
    except outbound.OutboundError as exc:
        error = str(exc)
    except (OSError, http.client.HTTPException) as exc:
        error = f"{exc.__class__.__name__}: {exc}"[:500] if str(exc) else exc.__class__.__name__
    if status is not None and 300 <= status < 400:
        error = f"Redirect ({status}) not followed: point the channel at the final URL."
    return Result(status, error, time.monotonic() - start)
