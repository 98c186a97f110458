"""HTTP health polling shared by the Docker target and the verify stage."""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import urlsplit

from .base import Cancelled, LogFn, RolloutFailed, StopFn

# No ProxyHandler entries: an http_proxy in the worker's environment must not
# route a health check of 127.0.0.1 through some proxy.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def check_url_once(url: str, timeout: float) -> tuple[bool, str]:
    """One GET; True only for HTTP 200. The text says what was seen, for the log."""
    if urlsplit(url).scheme not in ("http", "https"):
        # urllib would also open file:// and ftp:// URLs.
        return False, f"unsupported URL scheme in {url!r}"
    try:
        with _opener.open(urllib.request.Request(url, method="GET"), timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        exc.close()
        return False, f"HTTP {exc.code}"
    except urllib.error.URLError as exc:
        return False, _describe(exc.reason)
    except (OSError, http.client.HTTPException) as exc:
        return False, _describe(exc)
    if status == 200:
        return True, "HTTP 200"
    return False, f"HTTP {status}"


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
) -> None:
    """Poll `url` until it answers HTTP 200.

    `fail_fast` is asked between attempts; a message from it ends the wait at once
    (say, the container exited), so a crash is not reported only after `timeout`.
    Raises RolloutFailed or Cancelled.
    """
    log(f"Waiting up to {timeout:g} s for HTTP 200 from {url}")
    started = time.monotonic()
    deadline = started + timeout
    last = "no attempt made"
    while True:
        if should_stop():
            raise Cancelled(f"cancelled while waiting for {url}")
        ok, detail = check_url_once(url, timeout=max(0.1, min(2.0, deadline - time.monotonic())))
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
