"""The deployment files agree with the settings: compose.yaml, the Dockerfile,
.env.example and the configuration docs name only variables the settings read, and
name all of them. The settings themselves fail loudly at start-up."""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
READERS = {"env_str", "env_bool", "env_int", "env_list", "env_float", "env_size"}
APP_SERVICES = ("web", "worker", "beat")
_NO_DEFAULT = object()


def _settings_reads() -> dict[str, object]:
    """Every variable read through the typed readers in pipeline_ui/, with its default
    when that is a literal (else _NO_DEFAULT). A new env_*("NAME", ...) call shows up
    here without anyone updating this test."""
    reads: dict[str, object] = {}
    for path in sorted((ROOT / "pipeline_ui").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or getattr(node.func, "id", None) not in READERS:
                continue
            first = node.args[0] if node.args else None
            # A computed name would hide a variable from every check in this file.
            assert isinstance(first, ast.Constant) and isinstance(first.value, str), (
                f"{path.name}:{node.lineno}: {node.func.id}() needs a literal variable name"
            )
            default: object = _NO_DEFAULT
            if len(node.args) > 1:
                try:
                    default = ast.literal_eval(node.args[1])
                except ValueError:
                    pass  # computed from another setting; the docs describe it in words
            reads[first.value] = default
    return reads


SETTINGS_READS = _settings_reads()
SETTINGS_VARS = sorted(SETTINGS_READS)
# Every variable may come from a file (NAME_FILE); DJANGO_SETTINGS_MODULE picks the module.
ACCEPTED_VARS = set(SETTINGS_VARS) | {f"{name}_FILE" for name in SETTINGS_VARS} | {"DJANGO_SETTINGS_MODULE"}

_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate(value: str) -> str:
    """What compose makes of `${VAR:-default}` when VAR is unset."""
    return _INTERPOLATION.sub(lambda m: m.group(2) or "", value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {name: interpolate(str(value)) for name, value in env.items()}


def command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(part) for part in cmd]


def mount_targets(service: dict[str, Any]) -> list[str]:
    targets = []
    for volume in service.get("volumes") or []:
        targets.append(volume["target"] if isinstance(volume, dict) else volume.split(":")[1])
    return targets


def shipmate_services(services: dict[str, dict[str, Any]]) -> list[str]:
    image = services["web"].get("image")
    return [name for name, svc in services.items() if "build" in svc or (image and svc.get("image") == image)]


def run_settings(tmp_path: Path, env: dict[str, str], code: str) -> subprocess.CompletedProcess[str]:
    """Start Django with the real settings module in a clean environment (nothing
    inherited from the test run, which sets SECRET_KEY)."""
    clean = {
        "PATH": os.environ.get("PATH", ""),
        "DJANGO_SETTINGS_MODULE": "pipeline_ui.settings",
        "SHIPMATE_STATE_DIR": str(tmp_path),
        **env,
    }
    program = f"import django; django.setup(); from django.conf import settings; {code}"
    return subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    return lines[-1] if lines else ""


# -- compose.yaml -------------------------------------------------------------------------------


def test_settings_scan_finds_the_variables_the_settings_read() -> None:
    core = {"SECRET_KEY", "DEBUG", "DATABASE_URL", "REDIS_URL", "SHIPMATE_LEASE_SECONDS"}
    assert core <= set(SETTINGS_VARS)
    assert "SHIPMATE_SERVE_STATIC" in SETTINGS_VARS  # read in asgi.py, not settings.py
    # Literal defaults are compared with the docs; computed ones are described in words.
    assert isinstance(SETTINGS_READS["SHIPMATE_LEASE_SECONDS"], int)
    assert SETTINGS_READS["CELERY_BROKER_URL"] is _NO_DEFAULT


def test_compose_has_web_worker_beat_redis_postgres_and_registry(services: dict[str, Any]) -> None:
    assert {"web", "worker", "beat", "redis", "postgres", "registry"} <= set(services)


def test_shipmate_services_set_only_variables_the_settings_read(services: dict[str, Any]) -> None:
    names = shipmate_services(services)
    assert set(APP_SERVICES) <= set(names)
    unknown = {name: sorted(set(environment(services[name])) - ACCEPTED_VARS) for name in names}
    assert {name: extra for name, extra in unknown.items() if extra} == {}


def test_database_url_points_at_the_postgres_service(services: dict[str, Any]) -> None:
    postgres = environment(services["postgres"])
    db = dj_database_url.parse(environment(services["web"])["DATABASE_URL"])
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["HOST"], db["PORT"]) == ("postgres", 5432)
    assert db["NAME"] == postgres["POSTGRES_DB"]
    assert db["USER"] == postgres["POSTGRES_USER"]
    assert db["PASSWORD"] == postgres["POSTGRES_PASSWORD"]


def test_redis_url_points_at_the_redis_service_and_the_broker_follows_it(services: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        env = environment(services[name])
        url = urlsplit(env["REDIS_URL"])
        assert (url.scheme, url.hostname, url.port or 6379) == ("redis", "redis", 6379), name
        # Unset, so the broker is the same Redis (checked in the settings-load test below).
        assert "CELERY_BROKER_URL" not in env, name


def test_compose_environment_loads_in_the_real_settings(services: dict[str, Any], tmp_path: Path) -> None:
    env = environment(services["worker"])
    secret = tmp_path / "secret_key"
    secret.write_text("compose-test-key\n")
    env["SECRET_KEY_FILE"] = str(secret)  # /run/secrets exists only in the container
    env["SHIPMATE_STATE_DIR"] = str(tmp_path / "state")
    result = run_settings(
        tmp_path,
        env,
        "import json; d = settings.DATABASES['default']; print(json.dumps([settings.SECRET_KEY, "
        "settings.CELERY_BROKER_URL, settings.REDIS_URL, d['HOST'], d['NAME'], settings.REGISTRY, "
        "settings.BUILD_NETWORK_MODE, settings.DOCKER_HOST]))",
    )
    assert result.returncode == 0, result.stderr
    key, broker, redis_url, db_host, db_name, registry, network_mode, docker_host = json.loads(result.stdout)
    assert key == "compose-test-key"
    assert broker == redis_url == "redis://redis:6379/0"
    assert (db_host, db_name) == ("postgres", "shipmate")
    assert registry == env["SHIPMATE_REGISTRY"]
    assert network_mode == "bridge"
    assert docker_host == "unix:///var/run/docker.sock"


def test_worker_and_beat_run_the_web_image_with_the_same_environment(services: dict[str, Any]) -> None:
    web, worker, beat = (services[name] for name in APP_SERVICES)
    for other in (worker, beat):
        assert (other.get("image"), other.get("build")) == (web.get("image"), web.get("build"))
        assert other.get("secrets") == web.get("secrets")
    assert environment(beat) == environment(web)
    # The worker adds exactly the Docker engine; everything else is the shared anchor.
    assert environment(worker) == {**environment(web), "DOCKER_HOST": "unix:///var/run/docker.sock"}


def test_only_the_worker_gets_the_docker_socket(services: dict[str, Any]) -> None:
    assert "/var/run/docker.sock" in mount_targets(services["worker"])
    for name, svc in services.items():
        if name != "worker":
            assert "/var/run/docker.sock" not in mount_targets(svc), name
            assert "DOCKER_HOST" not in environment(svc), name


def _published(ports: list[Any]) -> dict[int, int]:
    """container port -> host port."""
    mapping = {}
    for port in ports:
        if isinstance(port, dict):
            mapping[int(port["target"])] = int(port.get("published", port["target"]))
        else:
            parts = str(port).split("/")[0].split(":")
            mapping[int(parts[-1])] = int(parts[-2]) if len(parts) > 1 else int(parts[-1])
    return mapping


def test_registry_is_reachable_where_shipmate_registry_points(services: dict[str, Any]) -> None:
    host, _, port = environment(services["web"])["SHIPMATE_REGISTRY"].partition(":")
    port_number = int(port or 80)
    registry_listens = 5000  # registry:2's default http.addr
    if host == "registry":
        assert port_number == registry_listens
    else:
        # The host's Docker engine pushes, so the port must be published on the host.
        assert host in ("localhost", "127.0.0.1")
        assert _published(services["registry"].get("ports", [])).get(registry_listens) == port_number


def test_worker_is_a_celery_worker_for_pipeline_ui(services: dict[str, Any]) -> None:
    assert command(services["worker"])[:4] == ["celery", "-A", "pipeline_ui", "worker"]


def test_beat_is_celery_beat_with_its_schedule_on_a_volume(services: dict[str, Any]) -> None:
    beat = command(services["beat"])
    assert beat[:4] == ["celery", "-A", "pipeline_ui", "beat"]
    schedule = beat[beat.index("-s") + 1]
    assert any(schedule.startswith(target.rstrip("/") + "/") for target in mount_targets(services["beat"]))


def test_redis_refuses_to_evict_and_keeps_an_append_only_file(services: dict[str, Any]) -> None:
    redis = command(services["redis"])
    assert redis[redis.index("--maxmemory-policy") + 1] == "noeviction"
    assert redis[redis.index("--appendonly") + 1] == "yes"


def test_web_serves_the_asgi_application_with_uvicorn(services: dict[str, Any]) -> None:
    web = command(services["web"])
    assert web[0] == "uvicorn"
    assert "pipeline_ui.asgi:application" in web
    assert web[web.index("--host") + 1] == "0.0.0.0"
    assert _published(services["web"]["ports"]).get(int(web[web.index("--port") + 1])) is not None


def test_shipmate_services_wait_for_healthy_postgres_redis_and_migrations(services: dict[str, Any]) -> None:
    assert "healthcheck" in services["postgres"] and "healthcheck" in services["redis"]
    assert command(services["migrate"])[-2:] == ["migrate", "--no-input"]
    for name in APP_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name
        assert depends["migrate"]["condition"] == "service_completed_successfully", name


def test_secret_key_comes_from_a_compose_secret(compose: dict[str, Any], services: dict[str, Any]) -> None:
    for name in shipmate_services(services):
        env = environment(services[name])
        assert "SECRET_KEY" not in env, name
        secret = env["SECRET_KEY_FILE"].removeprefix("/run/secrets/")
        assert secret in services[name]["secrets"], name
        assert secret in compose["secrets"]


def test_state_dir_is_a_volume_in_every_app_service(services: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        state_dir = environment(services[name])["SHIPMATE_STATE_DIR"]
        assert state_dir in mount_targets(services[name]), name


# -- Dockerfile ---------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_dockerfile_runs_uvicorn_as_a_non_root_user_on_python_311_slim() -> None:
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    user = [arg for op, arg in instructions if op == "USER"][-1]
    assert user not in ("root", "0")
    cmd = json.loads([arg for op, arg in instructions if op == "CMD"][-1])
    assert cmd[:2] == ["uvicorn", "pipeline_ui.asgi:application"]
    assert any(op == "RUN" and "git" in arg.split() for op, arg in instructions)
    assert any(op == "RUN" and "collectstatic" in arg for op, arg in instructions)


def test_dockerfile_keeps_the_build_time_secret_key_out_of_the_image() -> None:
    for op, arg in dockerfile_instructions():
        if op in ("ENV", "ARG"):
            assert "SECRET_KEY" not in arg


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_build() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".env", "secrets", ".state", ".venv", ".git"} <= ignored


# -- .env.example and the docs ------------------------------------------------------------------

_ENV_LINE = re.compile(r"^#?\s?([A-Z][A-Z0-9_]*)=(.*)$")


def env_example() -> dict[str, str]:
    text = (ROOT / ".env.example").read_text()
    return {m.group(1): m.group(2).strip() for m in map(_ENV_LINE.match, text.splitlines()) if m}


def shown(default: object) -> str:
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, list):
        return ",".join(default)
    return str(default)


def test_env_example_lists_every_setting() -> None:
    assert sorted(set(SETTINGS_VARS) - set(env_example())) == []


def test_env_example_lists_only_settings_and_compose_variables() -> None:
    compose_only = {m.group(1) for m in _INTERPOLATION.finditer((ROOT / "compose.yaml").read_text())}
    assert sorted(set(env_example()) - ACCEPTED_VARS - compose_only) == []


def test_env_example_shows_the_defaults_of_the_settings() -> None:
    listed = env_example()
    wrong = {
        name: (listed[name], shown(default))
        for name, default in SETTINGS_READS.items()
        if default is not _NO_DEFAULT and name in listed and listed[name] != shown(default)
    }
    assert wrong == {}


def config_table(text: str) -> dict[str, str]:
    """Variable -> default cell of a `| `NAME` | default | meaning |` table."""
    rows = re.findall(r"^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|([^|]*)\|", text, flags=re.MULTILINE)
    return {name: cell.strip() for name, cell in rows}


def test_configuration_doc_lists_every_setting_with_its_default() -> None:
    table = config_table((ROOT / "docs" / "configuration.md").read_text())
    assert sorted(set(SETTINGS_VARS) - set(table)) == []
    assert sorted(set(table) - set(SETTINGS_VARS)) == []
    wrong = {}
    for name, default in SETTINGS_READS.items():
        if default is _NO_DEFAULT:
            continue
        expected = shown(default)
        cell = table[name]
        ok = cell.startswith("*empty") if expected == "" else cell == f"`{expected}`"
        if not ok:
            wrong[name] = (cell, expected)
    assert wrong == {}


def test_readme_configuration_table_lists_every_setting() -> None:
    readme = ROOT / "README.md"
    assert readme.exists(), "README.md needs a configuration table (see docs/configuration.md)"
    text = readme.read_text()
    assert [name for name in SETTINGS_VARS if f"`{name}`" not in text] == []


# -- settings fail loudly -----------------------------------------------------------------------


def test_settings_refuse_to_start_without_secret_key(tmp_path: Path) -> None:
    result = run_settings(tmp_path, {}, "print(settings.SECRET_KEY)")
    assert result.returncode != 0
    assert "SECRET_KEY is required" in error_line(result)


def test_debug_mode_starts_without_secret_key(tmp_path: Path) -> None:
    result = run_settings(tmp_path, {"DEBUG": "true"}, "print(settings.DEBUG)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_secret_key_is_read_from_secret_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "secret_key"
    key_file.write_text("  key-from-a-file\n")
    result = run_settings(tmp_path, {"SECRET_KEY_FILE": str(key_file)}, "print(settings.SECRET_KEY)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "key-from-a-file"


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("SHIPMATE_LEASE_SECONDS", "abc", "SHIPMATE_LEASE_SECONDS"),
        ("SHIPMATE_LEASE_SECONDS", "1", "SHIPMATE_LEASE_SECONDS"),
        ("DEBUG", "maybe", "DEBUG"),
        ("DATABASE_URL", "nonsense", "DATABASE_URL"),
        ("SECRET_KEY_FILE", "/nonexistent/secret_key", "SECRET_KEY_FILE"),
    ],
)
def test_bad_value_stops_start_up_with_a_message_naming_the_variable(
    tmp_path: Path, name: str, value: str, named: str
) -> None:
    result = run_settings(tmp_path, {"SECRET_KEY": "x", name: value}, "print('started')")
    assert result.returncode != 0
    assert "started" not in result.stdout
    assert "ImproperlyConfigured" in error_line(result)
    assert named in error_line(result)
