"""HTTP health polling shared by the Docker target and the verify stage.

Every request goes through the outbound guard (outbound.http_get): the host is resolved
and checked against the outbound policy, the connection goes to the checked address,
each redirect hop is checked again, and no proxy from the worker's environment is used.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable

from .base import Cancelled, LogFn, RolloutFailed, StopFn
from .outbound import OutboundError, OutboundPolicy, OutboundRefused, http_get, redact


class HealthCheckRefused(OutboundRefused, RolloutFailed):
    """The outbound policy refuses the health or smoke URL (or a hop it redirects to).
    A RolloutFailed too, so a rollout that cannot be checked is rolled back."""


def _attempt(url: str, timeout: float, policy: OutboundPolicy | None) -> tuple[bool, str]:
    """One GET; raises OutboundRefused when the policy refuses an address on the way."""
    try:
        response = http_get(url, timeout=timeout, policy=policy)
    except OutboundRefused:
        raise
    except OutboundError as exc:
        return False, str(exc)
    except (OSError, http.client.HTTPException) as exc:
        return False, _describe(exc)
    if response.status == 200:
        return True, "HTTP 200"
    return False, f"HTTP {response.status}"


def check_url_once(url: str, timeout: float, *, policy: OutboundPolicy | None = None) -> tuple[bool, str]:
    """One GET; True only for HTTP 200. The text says what was seen, for the log
    (a refusal by the outbound policy too)."""
    try:
        return _attempt(url, timeout, policy)
    except OutboundRefused as exc:
        return False, str(exc)


def _describe(reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, http.client.RemoteDisconnected):
        return "connection closed without a response"
    return str(reason) or type(reason).__name__


def wait_http_ok(
    url: str,
    *,
    timeout: float,
    should_stop: StopFn,
    log: LogFn,
    interval: float = 0.2,
    fail_fast: Callable[[], str | None] | None = None,
    policy: OutboundPolicy | None = None,
) -> None:
    """Poll `url` until it answers HTTP 200.

    `fail_fast` is asked between attempts; a message from it ends the wait at once
    (say, the container exited), so a crash is not reported only after `timeout`.
    A refusal by the outbound policy ends it at once too (HealthCheckRefused).
    Raises RolloutFailed or Cancelled.
    """
    url = redact(url)  # credentials in a smoke URL are not sent (no basic auth) nor logged
    log(f"Waiting up to {timeout:g} s for HTTP 200 from {url}")
    started = time.monotonic()
    deadline = started + timeout
    last = "no attempt made"
    while True:
        if should_stop():
            raise Cancelled(f"cancelled while waiting for {url}")
        try:
            ok, detail = _attempt(url, max(0.1, min(2.0, deadline - time.monotonic())), policy)
        except OutboundRefused as exc:
            log(str(exc))
            raise HealthCheckRefused(str(exc)) from None
        if ok:
            log(f"{url} answered HTTP 200 after {time.monotonic() - started:.1f} s")
            return
        if detail != last:
            # Only changes are logged: one line per poll would flood the live log.
            log(f"{url}: {detail}")
            last = detail
        if fail_fast is not None:
            reason = fail_fast()
            if reason:
                raise RolloutFailed(reason)
        if time.monotonic() >= deadline:
            raise RolloutFailed(f"health check {url} did not pass within {timeout:g} s (last error: {last})")
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
