"""Click → first log line → "Succeeded", in a real browser.

Debian's Chromium (driven by Playwright) logs in as a developer and submits the Deploy
form; a real Celery worker thread builds, tests, pushes and rolls the demo out to a
Docker "dev" environment; uvicorn serves the app. Runs alternate main / v1.0, so the
first run of each ref builds from scratch and the later ones reuse the image.

    .venv/bin/python -m bench.click_to_log [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import (
    celery_worker,
    fresh_demo_repo,
    make_environment,
    make_repository,
    make_user,
    remove_bench_containers,
    remove_bench_images,
    setup_django,
    wait_finished,
)
from bench.report import median, table, write_section
from tests.live import CHROMIUM, CHROMIUM_ARGS
from tests.live import serve_asgi as asgi_server

DEPLOYMENT_URL = re.compile(r"/deployments/(\d+)/$")
# Page-side clock throughout (Date.now()): the submit that queued the run, the first
# line in #log (or the page load, when the server already rendered lines into it) and
# the status badge turning "Succeeded".
WATCH = """
document.addEventListener("submit", function () {
  sessionStorage.setItem("benchClickAt", String(Date.now()));
}, true);
window.__bench = {firstLineAt: null, succeededAt: null, initialLines: null};
document.addEventListener("DOMContentLoaded", function () {
  var s = window.__bench, log = document.getElementById("log");
  if (!log) return;
  s.initialLines = log.childElementCount;
  if (s.initialLines > 0) s.firstLineAt = Date.now();
  new MutationObserver(function () {
    if (s.firstLineAt === null && log.childElementCount > 0) s.firstLineAt = Date.now();
  }).observe(log, {childList: true});
  var check = function () {
    var st = document.getElementById("status");
    if (s.succeededAt === null && st && st.textContent.trim() === "Succeeded") s.succeededAt = Date.now();
  };
  new MutationObserver(check).observe(document.body, {childList: true, subtree: true, characterData: true});
  check();
});
"""


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, timeout=60)


def _demo_repo(path: Path) -> Path:
    """Main and v1.0 both with a unique Dockerfile label (cold builds), v1.0 on a side
    branch so deploying it after main needs no "older code" confirmation."""
    fresh_demo_repo(path)
    _git(path, "checkout", "-q", "-b", "bench-v1", "v1.0")
    dockerfile = (path / "Dockerfile").read_text()
    (path / "Dockerfile").write_text(
        dockerfile.replace("FROM scratch\n", f"FROM scratch\nLABEL bench.v1={uuid.uuid4().hex}\n", 1)
    )
    _git(path, "commit", "-q", "-am", "v1.0, cold")
    _git(path, "tag", "-f", "-a", "v1.0", "-m", "Version 1.0")
    _git(path, "checkout", "-q", "main")
    return path


def _deploy_once(page: Any, ref: str) -> dict[str, Any]:
    from deployments.models import Deployment

    page.goto("/deploy/")
    page.select_option("#id_repository", label="bench")
    page.fill("#id_ref", ref)
    page.select_option("#id_environment", label="dev")
    page.get_by_role("button", name="Deploy", exact=True).click()
    page.wait_for_url(DEPLOYMENT_URL, timeout=15_000)
    pk = int(DEPLOYMENT_URL.search(page.url).group(1))
    page.wait_for_function("window.__bench && window.__bench.succeededAt !== null", timeout=90_000)
    watched = page.evaluate("window.__bench")
    click_at = float(page.evaluate("sessionStorage.getItem('benchClickAt')"))
    deployment = wait_finished(Deployment.objects.get(pk=pk), timeout=30)
    build = deployment.stages.get(name="build")
    return {
        "pk": pk,
        "ref": ref,
        "status": deployment.status,
        "cold": build.status == "succeeded",
        "first_line_ms": watched["firstLineAt"] - click_at,
        "succeeded_ms": watched["succeededAt"] - click_at,
        "server_ms": (deployment.finished_at - deployment.created_at).total_seconds() * 1000,
        "lines_with_page": watched["initialLines"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    scratch = setup_django("click-to-log")
    # Playwright's sync API keeps an event loop in this thread; our ORM calls are plain sync ones.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    from deployments import permissions

    make_user("dev", permissions.DEVELOPERS)
    make_repository("bench", str(_demo_repo(scratch / "demo")))
    make_environment("dev")
    results: list[dict[str, Any]] = []
    try:
        with asgi_server() as base, celery_worker(), sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            context = browser.new_context(base_url=base)
            context.add_init_script(WATCH)
            page = context.new_page()
            page.goto("/login/")
            page.fill("input[name=username]", "dev")
            page.fill("input[name=password]", "dev-pw")
            with page.expect_navigation():
                page.click("form button[type=submit]")
            for i in range(args.runs):
                result = _deploy_once(page, "main" if i % 2 == 0 else "v1.0")
                print(result)
                results.append(result)
                time.sleep(0.2)
            context.close()
            browser.close()
    finally:
        remove_bench_containers()
        remove_bench_images()

    rows = [
        [
            str(i + 1),
            f"`{r['ref']}`",
            "cold (built)" if r["cold"] else "warm (reused)",
            r["status"],
            f"{r['first_line_ms']:.0f}",
            f"{r['succeeded_ms']:.0f}",
            f"{r['server_ms']:.0f}",
        ]
        for i, r in enumerate(results)
    ]
    cold = [r for r in results if r["cold"]]
    warm = [r for r in results if not r["cold"]]
    summary = [
        [
            label,
            str(len(group)),
            f"{median([r['first_line_ms'] for r in group]):.0f}",
            f"{median([r['succeeded_ms'] for r in group]):.0f}",
        ]
        for label, group in (("cold", cold), ("warm", warm))
        if group
    ]
    markdown = f"""
## Click → log line → Succeeded, in Chromium

`bench/click_to_log.py`. Headless Chromium (Playwright, `/usr/bin/chromium`) logged in as
a developer submits the Deploy form for the demo repository to a Docker `dev`
environment (host network, health check on `/healthz`). A real Celery worker thread
(solo pool, Redis broker) runs the pipeline; uvicorn serves the app. Times are taken in
the page (`Date.now()`): from the submit to the first line appearing in `#log`, and to
the status badge showing "Succeeded". "Cold" runs check out, build (no layer cache:
each ref's Dockerfile carries a fresh label), test and push; "warm" runs of a ref built
before skip to the rollout. The server column is the deployment's own `created_at` →
`finished_at`.

{table(["Run", "Ref", "Build", "Status", "Click → first line ms", "Click → Succeeded ms", "Server ms"], rows)}

Medians:

{table(["", "Runs", "Click → first line ms", "Click → Succeeded ms"], summary)}
"""
    write_section("click_to_log", markdown)


if __name__ == "__main__":
    main()
