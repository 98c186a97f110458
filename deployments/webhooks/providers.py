"""What each git host sends: how its signature is checked and its push event read.
Plain Python: no request, no database."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")


class BadRequest(Exception):
    """The request cannot be accepted; the message goes back to the sender."""


@dataclass(frozen=True)
class Push:
    event: str
    ref: str = ""
    commit_sha: str = ""
    pusher: str = ""

    @property
    def is_push(self) -> bool:
        return bool(self.ref)

    @property
    def is_deletion(self) -> bool:
        return not self.commit_sha or set(self.commit_sha) == {"0"}


def _hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def verify(provider: str, secret: str, body: bytes, headers: Mapping[str, str]) -> bool:
    """True when the request carries the provider's proof that it knows `secret`."""
    if not secret:
        return False
    if provider == "github":
        given = headers.get("X-Hub-Signature-256", "")
        return given.startswith("sha256=") and _same(given[len("sha256=") :].lower(), _hmac_hex(secret, body))
    if provider == "gitlab":
        return _same(headers.get("X-Gitlab-Token", ""), secret)
    if provider == "gitea":
        given = headers.get("X-Forgejo-Signature") or headers.get("X-Gitea-Signature", "")
        return bool(given) and _same(given.lower(), _hmac_hex(secret, body))
    return False


def delivery_id(provider: str, headers: Mapping[str, str]) -> str:
    name = {"github": "X-GitHub-Delivery", "gitlab": "X-Gitlab-Event-UUID", "gitea": "X-Gitea-Delivery"}
    value = headers.get(name[provider], "")
    if provider == "gitea" and not value:
        value = headers.get("X-Forgejo-Delivery", "")
    return value.strip()[:200]


def _event(provider: str, headers: Mapping[str, str]) -> str:
    if provider == "github":
        return headers.get("X-GitHub-Event", "")
    if provider == "gitlab":
        return headers.get("X-Gitlab-Event", "")
    return headers.get("X-Forgejo-Event") or headers.get("X-Gitea-Event", "")


_PUSH_EVENTS = {"github": {"push"}, "gitlab": {"Push Hook", "Tag Push Hook"}, "gitea": {"push"}}


def _pusher(provider: str, data: dict[str, Any]) -> str:
    if provider == "gitlab":
        return str(data.get("user_username") or data.get("user_name") or "")
    pusher = data.get("pusher") or {}
    sender = data.get("sender") or {}
    if provider == "github":
        return str(sender.get("login") or pusher.get("name") or "")
    return str(pusher.get("login") or pusher.get("username") or sender.get("login") or "")


def parse(provider: str, body: bytes, headers: Mapping[str, str]) -> Push:
    """The push in a verified body; another event gives a Push with no ref."""
    event = _event(provider, headers)[:100]
    if event not in _PUSH_EVENTS[provider]:
        return Push(event=event)
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest("The body is not JSON: send it as application/json.") from exc
    if not isinstance(data, dict) or not isinstance(data.get("ref"), str):
        raise BadRequest("The push event has no ref.")
    after = data.get("after") or ""
    if provider == "gitlab" and data.get("checkout_sha"):
        after = data["checkout_sha"]
    after = str(after or "")
    if not _SHA.match(after):
        # Deployed as the ref: it must be a commit id, never a branch name in disguise.
        raise BadRequest("The push event's commit is not a SHA.")
    return Push(event=event, ref=data["ref"][:300], commit_sha=after, pusher=_pusher(provider, data)[:200])
