"""How long a bad release stays in place: from `apply()` to RolloutFailed, and from there
to the last good release serving again.

Kubernetes: the kmock emulator from tests/k8s/harness.py (an emulator, not a cluster),
crash-looping and ImagePullBackOff releases at two poll intervals, undo to the previous
digest. Docker: the test engine and registry, a release that exits at once and one whose
health check never passes, undo to the previous container. Then, through a real Celery
worker, a Docker deployment that rolls itself back (its stage and finish timestamps).

    .venv/bin/python -m bench.rollback_times [--runs 5] [--no-pipeline]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import threading
import time
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Callable
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
from deployments.pipeline.base import Release, RolloutFailed, never_stop

POLLS = (1.0, 0.2)
WATCH_EVERY = 0.01  # how often the emulator's own store is sampled
DOCKER_HEALTH_TIMEOUT = 3.0
CRASH_CMD = ["sh", "-c", "echo boom >&2; exit 3"]
# What RolloutFailed must say for each bad release, so a run that failed otherwise is not timed.
REASONS = {
    "crashloop": "CrashLoopBackOff",
    "imagepull": "ImagePullBackOff",
    "crash": "exited with code 3",
    "unhealthy": "did not pass",
}
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))

MS = ["median ms", "min ms", "max ms"]

Times = dict[str, list[float]]


class Log(list[str]):
    def __call__(self, line: str) -> None:
        self.append(line)


def expect_failure(target: Any, log: Log, reason: str) -> float:
    """When `target.wait()` raised RolloutFailed, which must mention `reason`."""
    try:
        target.wait(log=log, should_stop=never_stop)
    except RolloutFailed as exc:
        if reason not in str(exc):
            raise RuntimeError(f"failed for another reason than {reason}: {exc}") from exc
        return time.monotonic()
    raise RuntimeError("the bad release did not fail:\n" + "\n".join(log[-10:]))


# --- Kubernetes (emulator) ------------------------------------------------------------


class Watcher(threading.Thread):
    """Samples the emulator's store (in its loop) to time when a state became visible there."""

    def __init__(self, cluster: Any, checks: dict[str, Callable[[], bool]]) -> None:
        super().__init__(name="bench-watcher", daemon=True)
        self.cluster, self.checks = cluster, checks
        self.seen: dict[str, float] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set() and len(self.seen) < len(self.checks):
            pending = {k: f for k, f in self.checks.items() if k not in self.seen}
            states = self.cluster.call(lambda p=pending: {k: f() for k, f in p.items()})
            now = time.monotonic()
            self.seen.update({k: now for k, ok in states.items() if ok})
            self.done.wait(WATCH_EVERY)

    def stop(self) -> dict[str, float]:
        self.done.set()
        if self.is_alive():
            self.join(5)
        return self.seen


def _pod_waiting(cluster: Any, ns: str, image: str, reason: str) -> Callable[[], bool]:
    from tests.k8s.harness import PODS

    def check() -> bool:
        for (resource, namespace, _), obj in list(cluster.emulator.objects.items()):
            if resource == PODS and namespace == ns and not obj.deleted:
                for cs in obj.raw.get("status", {}).get("containerStatuses", []):
                    if cs.get("image") == image and cs["state"].get("waiting", {}).get("reason") == reason:
                        return True
        return False

    return check


def _rolled_out(cluster: Any, ns: str, image: str) -> Callable[[], bool]:
    from tests.k8s.harness import DEPLOYMENTS

    def check() -> bool:
        raw = cluster.emulator.objects[DEPLOYMENTS, ns, "web"].raw
        status = raw.get("status", {})
        reasons = {c["type"]: c["reason"] for c in status.get("conditions", [])}
        return (
            raw["spec"]["template"]["spec"]["containers"][0]["image"] == image
            and status.get("observedGeneration") == raw["metadata"]["generation"]
            and reasons.get("Progressing") == "NewReplicaSetAvailable"
        )

    return check


def _k8s_run(scenario: str, poll: float, times: Times) -> float:
    """One rollout and undo on a cluster of its own: kmock keeps every request it served and
    gets slower as that history grows, so a shared one would slow the later runs down."""
    from deployments.pipeline.targets.kubernetes import KubernetesTarget
    from tests.k8s.harness import FakeCluster

    ns, reason = "bench", REASONS[scenario]
    old, bad = (f"127.0.0.1:5001/shop/web@sha256:{uuid.uuid4().hex * 2}" for _ in range(2))
    settings = dict(namespace=ns, deployment="web", container="app", poll_interval=poll, timeout=60)
    log = Log()
    with FakeCluster.running() as cluster:
        cluster.seed_deployment(ns, "web", containers={"app": old}, replicas=2)
        cluster.set_scenario(bad, scenario)
        target = KubernetesTarget.from_settings(
            name="bench", settings=settings, kubeconfig=cluster.kubeconfig
        )
        failing = Watcher(cluster, {"failing": _pod_waiting(cluster, ns, bad, reason)})
        # Started only once the bad digest is in place: the seeded Deployment is "rolled out" too.
        restored = Watcher(cluster, {"restored": _rolled_out(cluster, ns, old)})
        try:
            failing.start()
            start = time.monotonic()
            target.apply(Release(image=bad), log=log)
            applied = time.monotonic()
            failed = expect_failure(target, log, reason)
            restored.start()
            target.undo(Release(image=old), log=log)
            done = time.monotonic()
        finally:
            seen = {**failing.stop(), **restored.stop()}
            target.close()
        if cluster.deployment(ns, "web")["spec"]["template"]["spec"]["containers"][0]["image"] != old:
            raise RuntimeError("undo() returned but the Deployment does not run the previous digest")
        tick = cluster.controller.tick
    key = f"{scenario}@{poll:g}"
    times[f"{key}:apply"].append(applied - start)
    times[f"{key}:detect"].append(failed - start)
    times[f"{key}:visible"].append(seen.get("failing", float("nan")) - start)
    times[f"{key}:restore"].append(done - failed)
    times[f"{key}:restore_visible"].append(seen.get("restored", float("nan")) - failed)
    return tick


def kubernetes(runs: int) -> tuple[Times, float]:
    times: Times = defaultdict(list)
    tick = 0.0
    for poll in POLLS:
        for scenario in ("crashloop", "imagepull"):
            for _ in range(runs):
                tick = _k8s_run(scenario, poll, times)
        print(f"kubernetes poll {poll:g}: crashloop {median(times[f'crashloop@{poll:g}:detect']):.2f} s")
    return times, tick


# --- Docker (real engine) -----------------------------------------------------------------


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with NO_PROXY.open(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status, response.read().decode()
    except OSError as exc:
        return getattr(exc, "code", 0), ""


def _docker_run(client: Any, images: dict[str, str], times: Times) -> None:
    from deployments.pipeline.targets.docker import DockerTarget
    from tests.pipeline.images import free_port

    name, port = f"shipmate-bench-rollback-{uuid.uuid4().hex[:8]}", free_port()
    good = Release(image=images["good"])

    def target(health_timeout: float) -> DockerTarget:
        return DockerTarget(client=client, name=name, port=port, health_timeout=health_timeout)

    first = target(10.0)
    try:
        first.apply(good, log=Log())
        first.wait(log=Log(), should_stop=never_stop)
        for bad, timeout in (("crash", 10.0), ("unhealthy", DOCKER_HEALTH_TIMEOUT)):
            rollout, log = target(timeout), Log()
            start = time.monotonic()
            rollout.apply(Release(image=images[bad]), log=log)
            applied = time.monotonic()
            failed = expect_failure(rollout, log, REASONS[bad])
            rollout.undo(good, log=log)
            undone = time.monotonic()
            if _get(port, "/healthz")[0] != 200 or _get(port, "/")[1] != "good":
                raise RuntimeError(f"{name} does not serve the previous release after undo()")
            serving = time.monotonic()
            times[f"{bad}:apply"].append(applied - start)
            times[f"{bad}:detect"].append(failed - start)
            times[f"{bad}:undo"].append(undone - failed)
            times[f"{bad}:serving"].append(serving - failed)
    finally:
        first.stop_and_remove()


def docker_runs(runs: int, registry: str, pushed: list[str]) -> Times:
    import docker

    from tests.pipeline.images import build_and_push, httpd_cmd

    client = docker.from_env()
    try:

        def push(tag: str, cmd: list[str], files: dict[str, str]) -> str:
            image = build_and_push(client, registry, "shipmate-bench/rollback", tag, cmd=cmd, files=files)
            pushed.append(image)
            return image

        images = {
            "good": push("good", httpd_cmd(), {"www/index.html": "good", "www/healthz": "ok"}),
            "crash": push("crash", CRASH_CMD, {"etc/bench": "crash"}),
            # Serves pages but has no /healthz: the check sees 404 until health_timeout.
            "unhealthy": push("unhealthy", httpd_cmd(), {"www/index.html": "unhealthy"}),
        }
        times: Times = defaultdict(list)
        for _ in range(runs):
            _docker_run(client, images, times)
        print(
            f"docker: crash {median(times['crash:detect']):.2f} s, undo {median(times['crash:undo']):.2f} s"
        )
        return times
    finally:
        client.close()


# --- through the worker -------------------------------------------------------------------


def pipeline_runs(runs: int, scratch: Path, pushed: list[str]) -> list[dict[str, Any]]:
    from deployments import permissions
    from deployments.demo_app import add_commit

    repo = fresh_demo_repo(scratch / "demo")
    subprocess.run(["git", "-C", str(repo), "checkout", "-q", "-b", "crash"], check=True, timeout=30)
    dockerfile = (repo / "Dockerfile").read_text().splitlines()
    dockerfile[-1] = f"CMD {json.dumps(CRASH_CMD)}"
    add_commit(repo, "Exit at start", {"Dockerfile": "\n".join(dockerfile) + "\n"})
    user = make_user("dev", permissions.DEVELOPERS)
    repository = make_repository("bench", str(repo))
    env = make_environment("dev")
    results: list[dict[str, Any]] = []
    with celery_worker():
        from deployments import services

        for i, ref in enumerate(["main"] + ["crash"] * runs):
            deployment = services.deployment_request(
                user=user, repository=repository, environment=env, ref=ref, confirm_older=True
            )
            deployment = wait_finished(deployment, timeout=60)
            pushed.append(deployment.image_digest)
            wanted = "succeeded" if ref == "main" else "rolled_back"
            if deployment.status != wanted:
                raise RuntimeError(f"deployment #{deployment.pk} {deployment.status}: {deployment.error}")
            if i == 0:
                continue
            rollout = deployment.stages.get(name="rollout")
            results.append(
                {
                    "total": (deployment.finished_at - rollout.started_at).total_seconds(),
                    "stage": (rollout.finished_at - rollout.started_at).total_seconds(),
                    "built": i == 1,
                }
            )
    print(f"pipeline: rollout start → rolled_back {median([r['total'] for r in results]):.2f} s")
    return results


def delete_from_registry(registry: str, images: list[str]) -> None:
    for image in set(filter(None, images)):
        name, _, digest = image.removeprefix(f"{registry}/").partition("@")
        request = urllib.request.Request(f"http://{registry}/v2/{name}/manifests/{digest}", method="DELETE")
        try:
            NO_PROXY.open(request, timeout=5).close()
        except OSError:
            pass  # already gone (two tags of one digest): nothing left to delete


# --- report -------------------------------------------------------------------------------


def ms(values: list[float]) -> str:
    return f"{median(values) * 1000:.0f}"


def stats(values: list[float]) -> list[str]:
    return [ms(values), f"{min(values) * 1000:.0f}", f"{max(values) * 1000:.0f}"]


def k8s_markdown(times: Times, tick: float, runs: int) -> str:
    rows = []
    for poll in POLLS:
        crash, pull = f"crashloop@{poll:g}", f"imagepull@{poll:g}"

        def row(label: str, key: str, note: str, p: float = poll) -> list[str]:
            return [label, f"{p:g}", *stats(times[key]), note]

        rows += [
            row("(a) crash loop: `apply()` → RolloutFailed", f"{crash}:detect",
                f"CrashLoopBackOff in the store at {ms(times[f'{crash}:visible'])}; "
                f"`apply()` itself {ms(times[f'{crash}:apply'])}"),
            row("(b) RolloutFailed → `undo(previous)` returned", f"{crash}:restore",
                f"previous digest rolled out in the store at {ms(times[f'{crash}:restore_visible'])}"),
            row("(c) ImagePullBackOff: `apply()` → RolloutFailed", f"{pull}:detect",
                f"ImagePullBackOff in the store at {ms(times[f'{pull}:visible'])}"),
        ]  # fmt: skip
    header = ["Kubernetes (emulator)", "poll_interval s", *MS, "emulator (median ms)"]
    return f"""
### Kubernetes: kmock emulator, not a cluster

`KubernetesTarget` against `tests/k8s/harness.py` over loopback HTTP: kmock serves the
API, an asyncio "controller" writes Deployment status and Pods. Each run starts a fresh
emulator (kmock keeps every request it served and slows down as that history grows),
seeds a Deployment of 2 replicas already rolled out on the old digest, applies
a new digest whose scenario is `crashloop` or `imagepull`, waits, then calls
`undo(previous)`, which patches the old digest back and waits until kubectl's rules say
"successfully rolled out". {runs} runs per row.

The emulator's own configured delays, to subtract: the controller looks for new
generations every {tick * 1000:.0f} ms; a crashloop or imagepull rollout writes its
first status 100 ms after that, shows the new pod `ContainerCreating` for 200 ms, then
`CrashLoopBackOff` (restart 1, rewritten every 300 ms) or `ImagePullBackOff`; a
`success` rollout (the rollback) finishes 100 ms after the controller noticed it. The
last column is when that state actually appeared in the emulator's store (sampled every
{WATCH_EVERY * 1000:.0f} ms), measured from `apply()`'s start or from the failure: the
rest of each time is Shipmate's polling. On a real cluster add scheduling, the image
pull and the container's run up to its first crash before the kubelet shows
`CrashLoopBackOff`, and the registry's answer (or timeout) before `ImagePullBackOff`.

{table(header, rows)}

`wait()` polls at once after the patch, then after 0.1, 0.2, 0.4 s and so on up to
`poll_interval`, so a failure is seen at the first poll after it appears whatever the
interval: the emulator shows the crash loop after ~{ms(times["crashloop@1:visible"])} ms.
`undo()` follows the same schedule: the previous digest was rolled out in the store after
~{ms(times["crashloop@1:restore_visible"])} ms and `undo()` returned after
~{ms(times["crashloop@1:restore"])} ms.
"""


def docker_markdown(times: Times, runs: int) -> str:
    rows = [
        ["(a) exits with code 3: `apply()` → RolloutFailed", *stats(times["crash:detect"]),
         f"`apply()` (stop + rename old, create, start) {ms(times['crash:apply'])}"],
        [f"(b) health check never passes (health_timeout {DOCKER_HEALTH_TIMEOUT:g} s): `apply()` → "
         "RolloutFailed", *stats(times["unhealthy:detect"]), f"`apply()` {ms(times['unhealthy:apply'])}"],
        ["(c) after (a): RolloutFailed → `undo()` returned", *stats(times["crash:undo"]),
         "remove new, rename and start previous, HTTP 200"],
        ["(c) after (a): RolloutFailed → previous serves `/healthz` 200 (own GET)",
         *stats(times["crash:serving"]), "plus a GET of `/` showing the old page"],
        ["(c) after (b): RolloutFailed → previous serves `/healthz` 200 (own GET)",
         *stats(times["unhealthy:serving"]), ""],
    ]  # fmt: skip
    return f"""
### Docker: the test engine

`DockerTarget` on the test engine with the test registry; FROM-scratch busybox images:
`good` (httpd with `/healthz`), `crash` (`exit 3` at start), `unhealthy` (httpd without
`/healthz`, so 404 until the timeout). Each of {runs} runs starts `good` on a free
127.0.0.1 port (host network), then rolls out `crash` and undoes it, then `unhealthy`
and undoes it. The health check polls every 200 ms and asks the engine after each failed
attempt whether the container exited, so a crash does not wait for the timeout.

{table(["Docker", *MS, "notes (median ms)"], rows)}

Most of (a) is `apply()` itself; the exit is seen at the first health attempt. (b) is the
timeout plus `apply()`. The undo is quick because the old container was only stopped
and renamed: it is renamed back and started, no pull and no create.
"""


def pipeline_markdown(results: list[dict[str, Any]]) -> str:
    rows = [
        [
            str(i + 1),
            "built" if r["built"] else "reused",
            f"{r['stage'] * 1000:.0f}",
            f"{r['total'] * 1000:.0f}",
        ]
        for i, r in enumerate(results)
    ]
    totals = [r["total"] for r in results]
    return f"""
### Through the worker: a deployment that rolls itself back

A real Celery worker thread runs the demo repository to a Docker `dev` environment:
first `main` (succeeds), then {len(results)} times a branch whose image exits with code 3 at
start. Timed from the database: the rollout stage's `started_at` → the deployment's
`finished_at` with status `rolled_back` (apply, failure, undo, health check of the
restored container, recording). The first of those runs built the image, the later ones
reused it; the build is before the rollout stage and not in these times.

{table(["Run", "Image", "rollout stage ms", "rollout start → rolled_back ms"], rows)}

Median {median(totals) * 1000:.0f} ms, min {min(totals) * 1000:.0f} ms, max {max(totals) * 1000:.0f} ms.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-pipeline", action="store_true", help="skip the run through the worker")
    args = parser.parse_args()
    scratch = setup_django("rollback-times")
    registry = os.environ["SHIPMATE_REGISTRY"]
    pushed: list[str] = []
    started = time.monotonic()
    try:
        k8s, tick = kubernetes(args.runs)
        dock = docker_runs(args.runs, registry, pushed)
        pipeline = [] if args.no_pipeline else pipeline_runs(args.runs, scratch, pushed)
    finally:
        remove_bench_containers()
        remove_bench_images()
        delete_from_registry(registry, pushed)
    markdown = f"""
## Rollback: failure detected → last good release restored

`bench/rollback_times.py`. How long a broken release is in place before Shipmate notices,
and how long until the previous release serves again. Median, min and max of
{args.runs} runs each; the whole benchmark took {time.monotonic() - started:.0f} s.
"""
    markdown += k8s_markdown(k8s, tick, args.runs) + docker_markdown(dock, args.runs)
    markdown += pipeline_markdown(pipeline) if pipeline else ""
    write_section("rollback_times", markdown)


if __name__ == "__main__":
    main()
