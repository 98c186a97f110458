"""The build, test and push stages against the test Docker engine and registry."""

from __future__ import annotations

import time
import urllib.request
import uuid
from pathlib import Path

import docker
import pytest

from deployments.demo_app import add_commit
from deployments.pipeline import docker_client
from deployments.pipeline.base import Cancelled, StageError, TargetError
from deployments.pipeline.build import EXTERNAL_DOCKERFILE, build_image, oci_labels
from deployments.pipeline.push import push_image
from deployments.pipeline.testrun import TEST_LABEL, run_tests

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    ]
)


def never() -> bool:
    return False


def build(client: docker.DockerClient, repo: Path, tag: str, lines, **kwargs) -> str:
    options = {
        "context_dir": repo,
        "dockerfile": repo / "Dockerfile",
        "tag": tag,
        "labels": {},
        "network_mode": "none",
        "log": lines,
        "should_stop": never,
    }
    options.update(kwargs)
    return build_image(client, **options)


@pytest.mark.parametrize("url", ["unix:///nonexistent/docker.sock", "tcp://127.0.0.1:1"])
def test_connecting_to_a_missing_engine_raises_target_error(url: str) -> None:
    with pytest.raises(TargetError, match=f"Docker engine at {url} is unreachable"):
        docker_client.connect(url)


def test_build_streams_builder_lines_and_labels_the_image(
    docker_engine, demo_repo: Path, remove_images, lines
) -> None:
    tag = f"shipmate-test/build-{uuid.uuid4().hex[:10]}:1"
    remove_images.append(tag)
    labels = oci_labels("https://bot:token123@git.example/app.git", "a" * 40, "main")

    image_id = build(docker_engine, demo_repo, tag, lines, labels=labels)

    image = docker_engine.images.get(tag)
    assert image.id == image_id
    assert image.labels["org.opencontainers.image.source"] == "https://git.example/app.git"
    assert image.labels["org.opencontainers.image.revision"] == "a" * 40
    assert image.labels["org.opencontainers.image.ref.name"] == "main"
    assert image.labels["org.opencontainers.image.created"].endswith("Z")
    assert any(line.startswith("Step 1/") and "FROM scratch" in line for line in lines)
    assert all("\n" not in line and line.strip() for line in lines)
    assert not any("token123" in line for line in lines)


def test_failing_build_raises_with_the_builders_message(
    docker_engine, demo_repo: Path, remove_images, lines
) -> None:
    add_commit(
        demo_repo,
        "Break the build",
        {"Dockerfile": 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "false"]\n'},
    )
    tag = f"shipmate-test/broken-{uuid.uuid4().hex[:10]}:1"
    remove_images.append(tag)

    with pytest.raises(StageError, match="build failed: .*returned a non-zero code: 1"):
        build(docker_engine, demo_repo, tag, lines)
    assert any("Step 2/" in line for line in lines)


def test_dockerfile_from_a_separate_repository_is_copied_into_the_context(
    docker_engine, demo_repo: Path, tmp_path: Path, remove_images, lines
) -> None:
    outside = tmp_path / "images" / "Dockerfile"
    outside.parent.mkdir()
    outside.write_text("FROM scratch\nCOPY www/healthz /separate-dockerfile-was-used\n")
    tag = f"shipmate-test/separate-{uuid.uuid4().hex[:10]}:1"
    remove_images.append(tag)

    build(docker_engine, demo_repo, tag, lines, dockerfile=outside)

    assert (demo_repo / EXTERNAL_DOCKERFILE).read_text() == outside.read_text()
    assert any("COPY www/healthz /separate-dockerfile-was-used" in line for line in lines)


def test_build_is_cancelled_while_a_step_is_silent(
    docker_engine, demo_repo: Path, remove_images, lines
) -> None:
    add_commit(
        demo_repo,
        "Slow build",
        {"Dockerfile": 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "sleep", "37"]\n'},
    )
    tag = f"shipmate-test/slow-{uuid.uuid4().hex[:10]}:1"
    remove_images.append(tag)
    started = time.monotonic()

    def should_stop() -> bool:
        return any("Running in" in line for line in lines)

    with pytest.raises(Cancelled):
        build(docker_engine, demo_repo, tag, lines, should_stop=should_stop)
    assert time.monotonic() - started < 10
    # The engine stops a build whose client went away: its step container goes too.
    deadline = time.monotonic() + 10
    while sleeping_build_containers(docker_engine) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sleeping_build_containers(docker_engine) == []


def sleeping_build_containers(client: docker.DockerClient) -> list[str]:
    return [c["Id"] for c in client.api.containers(all=True) if "sleep 37" in c["Command"]]


def test_passing_tests_stream_their_output(docker_engine, demo_image: str, lines) -> None:
    run_tests(
        docker_engine, image=demo_image, command="sh /app/test.sh", timeout=20, log=lines, should_stop=never
    )

    assert "all demo tests passed" in lines
    assert lines[-1].startswith("Tests passed (") and lines[-1].endswith(" line(s) of output)")


def test_failing_tests_report_the_exit_code(docker_engine, demo_image: str, lines) -> None:
    with pytest.raises(StageError, match="tests failed with exit code 3"):
        run_tests(
            docker_engine,
            image=demo_image,
            command="sh -c 'echo checking; echo broken >&2; exit 3'",
            timeout=20,
            log=lines,
            should_stop=never,
        )
    assert lines[-2:] == ["checking", "broken"]


def test_stdout_and_stderr_arrive_in_the_order_they_were_written(
    docker_engine, demo_image: str, lines
) -> None:
    script = "; ".join(f"echo out{i}; echo err{i} >&2" for i in range(50))
    run_tests(
        docker_engine, image=demo_image, command=f"sh -c '{script}'", timeout=20, log=lines, should_stop=never
    )
    expected = [name for i in range(50) for name in (f"out{i}", f"err{i}")]
    assert lines[1:-1] == expected


def test_test_container_has_no_network_and_no_variables(docker_engine, demo_image: str, lines) -> None:
    run_tests(
        docker_engine,
        image=demo_image,
        command="sh -c 'ls /sys/class/net; env | cut -d= -f1 | sort'",
        timeout=20,
        log=lines,
        should_stop=never,
    )

    output = lines[1:-1]
    assert output[0] == "lo"
    assert set(output[1:]) <= {"HOME", "HOSTNAME", "PATH", "PWD", "SHLVL", "TERM", "TMPDIR"}


def test_tests_that_run_too_long_are_killed(docker_engine, demo_image: str, lines) -> None:
    started = time.monotonic()

    with pytest.raises(StageError, match="tests timed out after 1 s"):
        run_tests(
            docker_engine, image=demo_image, command="sleep 60", timeout=1, log=lines, should_stop=never
        )
    assert time.monotonic() - started < 6


def test_test_run_stops_when_cancelled(docker_engine, demo_image: str, lines) -> None:
    asked = time.monotonic() + 0.5

    with pytest.raises(Cancelled):
        run_tests(
            docker_engine,
            image=demo_image,
            command="sleep 60",
            timeout=30,
            log=lines,
            should_stop=lambda: time.monotonic() > asked,
        )
    assert time.monotonic() - asked < 5


def test_test_containers_are_always_removed(docker_engine, demo_image: str, lines) -> None:
    with pytest.raises(StageError):
        run_tests(docker_engine, image=demo_image, command="false", timeout=10, log=lines, should_stop=never)

    leftovers = docker_engine.containers.list(all=True, filters={"label": TEST_LABEL, "ancestor": demo_image})
    assert leftovers == []


def test_empty_test_command_is_skipped(docker_engine, demo_image: str, lines) -> None:
    run_tests(docker_engine, image=demo_image, command="  ", timeout=10, log=lines, should_stop=never)

    assert lines == ["no test command configured; skipping"]


def test_push_returns_the_digest_the_registry_serves(
    docker_engine, demo_image: str, registry_host: str, unique_repository: str, remove_images, lines
) -> None:
    docker_engine.images.get(demo_image).tag(unique_repository, "v1")
    remove_images.append(f"{unique_repository}:v1")

    reference = push_image(
        docker_engine, repository=unique_repository, tag="v1", log=lines, should_stop=never
    )

    name = unique_repository.split("/", 1)[1]
    request = urllib.request.Request(
        f"http://{registry_host}/v2/{name}/manifests/v1", method="HEAD", headers={"Accept": MANIFEST_TYPES}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        served = response.headers["Docker-Content-Digest"]
    assert reference == f"{unique_repository}@{served}"
    assert lines[-1] == f"Pushed {reference}"
    assert not any(line.startswith(("Preparing", "Waiting")) or ": Preparing" in line for line in lines)


def test_push_to_a_registry_that_is_down_fails_clearly(
    docker_engine, demo_image: str, remove_images, lines
) -> None:
    repository = f"127.0.0.1:5999/shipmate-test/down-{uuid.uuid4().hex[:10]}"
    docker_engine.images.get(demo_image).tag(repository, "v1")
    remove_images.append(f"{repository}:v1")

    with pytest.raises(StageError, match=f"push to {repository} failed: registry unreachable"):
        push_image(docker_engine, repository=repository, tag="v1", log=lines, should_stop=never)


def test_planted_symlink_at_the_dockerfile_copy_name_does_not_overwrite_its_target(
    docker_engine, demo_repo: Path, tmp_path: Path, remove_images, lines
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("must stay as it is\n")
    (demo_repo / EXTERNAL_DOCKERFILE).symlink_to(victim)
    outside = tmp_path / "images" / "Dockerfile"
    outside.parent.mkdir()
    outside.write_text("FROM scratch\nCOPY www/healthz /separate-dockerfile-was-used\n")
    tag = f"shipmate-test/planted-{uuid.uuid4().hex[:10]}:1"
    remove_images.append(tag)

    build(docker_engine, demo_repo, tag, lines, dockerfile=outside)

    assert victim.read_text() == "must stay as it is\n"
    assert not (demo_repo / EXTERNAL_DOCKERFILE).is_symlink()
    assert (demo_repo / EXTERNAL_DOCKERFILE).read_text() == outside.read_text()


def test_directory_at_the_dockerfile_copy_name_fails_the_build(
    docker_engine, demo_repo: Path, tmp_path: Path, lines
) -> None:
    (demo_repo / EXTERNAL_DOCKERFILE).mkdir()
    outside = tmp_path / "Dockerfile"
    outside.write_text("FROM scratch\n")

    with pytest.raises(StageError, match="directory named"):
        build(docker_engine, demo_repo, "shipmate-test/never:1", lines, dockerfile=outside)
