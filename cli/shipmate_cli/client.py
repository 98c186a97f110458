"""The API over httpx: every non-2xx answer and every connection error becomes a
`Failure` carrying the CLI's exit code and the API's own message."""

from __future__ import annotations

from typing import Any

import click
import httpx

# Exit codes (README, "CLI"):
SUCCEEDED, FAILED, REFUSED, TIMED_OUT = 0, 1, 2, 3


class Failure(click.ClickException):
    def __init__(self, message: str, exit_code: int = REFUSED) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click reads it from the instance


def error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
        return f"{body['message']} ({body['code']}, HTTP {response.status_code})"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code} from {response.request.url}"


class Api:
    def __init__(self, url: str, token: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(
            base_url=f"{self.url}/api/v1/",
            headers={"Authorization": f"Bearer {token}", "User-Agent": "shipmate-cli"},
            timeout=timeout,
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise unreachable(self.url, exc) from None
        if response.is_error:
            raise Failure(error_message(response))
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, data: dict[str, Any] | None = None) -> Any:
        return self.request("POST", path, json=data or {})

    def close(self) -> None:
        self.http.close()


def unreachable(url: str, exc: Exception) -> Failure:
    return Failure(f"Cannot reach {url}: {exc.__class__.__name__}: {exc}")
