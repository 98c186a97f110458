"""A user of `make run` over HTTP: log in, deploy, follow the live log as text."""

from __future__ import annotations

import re
import time

import httpx

_OPTION = r'<option value="(\d+)"[^>]*>\s*{}\s*</option>'


class ShipmateUser:
    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30, follow_redirects=False, trust_env=False)

    def close(self) -> None:
        self.http.close()

    def _csrf(self, path: str) -> tuple[str, str]:
        page = self.http.get(path)
        page.raise_for_status()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert token, f"no CSRF token on {path}"
        return token.group(1), page.text

    def login(self, username: str, password: str) -> None:
        token, _ = self._csrf("/login/")
        response = self.http.post(
            "/login/", data={"username": username, "password": password, "csrfmiddlewaretoken": token}
        )
        assert response.status_code == 302, f"login as {username} failed: {response.status_code}"

    def deploy(self, repository: str, ref: str, environment: str) -> int:
        token, form = self._csrf("/deploy/")
        repo = re.search(_OPTION.format(re.escape(repository)), form)
        env = re.search(_OPTION.format(re.escape(environment)), form)
        assert repo and env, "the Deploy form does not offer the demo repository and dev"
        response = self.http.post(
            "/deploy/",
            data={
                "repository": repo.group(1),
                "environment": env.group(1),
                "ref": ref,
                "csrfmiddlewaretoken": token,
            },
        )
        assert response.status_code == 302, response.text[:2000]
        return int(response.headers["location"].rstrip("/").rsplit("/", 1)[1])

    def follow(self, pk: int, *, until: str = "event: end", timeout: float = 120) -> str:
        """The text stream (?format=text) up to and including the event block containing `until`."""
        received = ""
        deadline = time.monotonic() + timeout
        with self.http.stream("GET", f"/deployments/{pk}/events?format=text", timeout=timeout) as stream:
            for chunk in stream.iter_text():
                received += chunk
                if until in received and received.endswith("\n\n"):
                    return received
                if time.monotonic() > deadline:
                    break
        raise AssertionError(f"{until!r} not seen in the stream of #{pk}:\n{received[-3000:]}")
