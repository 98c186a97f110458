"""Each target's settings dataclass: parse() types, defaults and refusals that name the setting."""

from __future__ import annotations

from typing import Any

import pytest

from deployments.pipeline.base import TargetError
from deployments.pipeline.targets.settings import (
    DockerSettings,
    KubernetesSettings,
    SettingsError,
    parse_settings,
)

K8S = {"namespace": "shop", "deployment": "web", "container": "app"}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"port": 8080},
            {"port": 8080, "network_mode": "host", "health_path": "/healthz", "health_timeout": 30.0},
        ),
        ({"port": "8080", "container_port": "80"}, {"port": 8080, "container_port": 80}),
        (
            {"port": 1, "network_mode": "bridge", "bind_host": "0.0.0.0"},
            {"network_mode": "bridge", "bind_host": "0.0.0.0"},
        ),
        (
            {"port": 1, "health_timeout": "2.5", "health_host": "localhost"},
            {"health_timeout": 2.5, "health_host": "localhost"},
        ),
        ({"port": 1, "docker_host": "unix:///run/docker.sock"}, {"docker_host": "unix:///run/docker.sock"}),
        ({"port": 1, "volumes": ["data:/var/lib/app"]}, {"volumes": ("data:/var/lib/app",)}),
        (
            {"port": 1, "container_port": "", "health_path": None, "namespace": "ignored"},
            {"container_port": None},
        ),
    ],
)
def test_docker_settings_parse_good_input(data: dict[str, Any], expected: dict[str, Any]) -> None:
    settings = DockerSettings.parse(data)
    assert {key: getattr(settings, key) for key in expected} == expected


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({}, "port", "port is required"),
        ({"port": 0}, "port", "port must be a whole number from 1 to 65535, not 0"),
        ({"port": True}, "port", "port must be a whole number"),
        ({"port": 1, "container_port": 70000}, "container_port", "container_port must be a whole number"),
        ({"port": 1, "network_mode": "none"}, "network_mode", "would leave the app unreachable"),
        ({"port": 1, "network_mode": "bad name!"}, "network_mode", "network_mode must be 'host', 'bridge'"),
        ({"port": 1, "bind_host": "localhost"}, "bind_host", "bind_host must be an IP address"),
        ({"port": 1, "health_host": "a b"}, "health_host", "health_host must be a host name"),
        (
            {"port": 1, "health_path": "healthz"},
            "health_path",
            "health_path must be a path starting with '/'",
        ),
        (
            {"port": 1, "health_timeout": "soon"},
            "health_timeout",
            "health_timeout must be a number of seconds",
        ),
        ({"port": 1, "health_timeout": 7200}, "health_timeout", "from 0 to 3600"),
        (
            {"port": 1, "docker_host": "/run/docker.sock"},
            "docker_host",
            "docker_host must start with unix://",
        ),
        ({"port": 1, "volumes": "data:/x"}, "volumes", "volumes must be a list"),
        (
            {"port": 1, "volumes": ["/etc:/host-etc"]},
            "volumes",
            "bind mount /etc is not under an allowed directory",
        ),
    ],
)
def test_docker_settings_parse_refuses_bad_input_naming_the_setting(data, field, message) -> None:
    with pytest.raises(SettingsError) as refused:
        DockerSettings.parse(data)
    assert refused.value.field == field and message in str(refused.value)
    assert isinstance(refused.value, TargetError)  # what the pipeline already reports as a failed check


def test_docker_bind_mounts_are_allowed_only_under_the_given_roots() -> None:
    settings = DockerSettings.parse(
        {"port": 1, "volumes": ["/srv/apps/shop:/uploads:ro"]}, bind_roots=["/srv/apps"]
    )
    assert settings.volumes == ("/srv/apps/shop:/uploads:ro",)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (K8S, {**K8S, "timeout": 600.0, "max_restarts": 3, "in_cluster": False, "context": ""}),
        ({**K8S, "namespace": " shop "}, {"namespace": "shop"}),
        (
            {**K8S, "timeout": "90", "max_restarts": "5", "poll_interval": 0.5},
            {"timeout": 90.0, "max_restarts": 5, "poll_interval": 0.5},
        ),
        (
            {**K8S, "in_cluster": "yes", "context": "prod", "port": 8080},
            {"in_cluster": True, "context": "prod"},
        ),
    ],
)
def test_kubernetes_settings_parse_good_input(data: dict[str, Any], expected: dict[str, Any]) -> None:
    settings = KubernetesSettings.parse(data)
    assert {key: getattr(settings, key) for key in expected} == expected


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (
            {"deployment": "web", "container": "app"},
            "namespace",
            "Kubernetes setting 'namespace' is required",
        ),
        ({**K8S, "deployment": "  "}, "deployment", "Kubernetes setting 'deployment' is required"),
        ({"namespace": "n", "deployment": "web"}, "container", "Kubernetes setting 'container' is required"),
        ({**K8S, "timeout": "soon"}, "timeout", "Kubernetes setting 'timeout' must be a number, got 'soon'"),
        ({**K8S, "max_restarts": 0}, "max_restarts", "must be a positive number"),
        ({**K8S, "poll_interval": -1}, "poll_interval", "must be a positive number"),
        ({**K8S, "context": 3}, "context", "context must be text"),
    ],
)
def test_kubernetes_settings_parse_refuses_bad_input_naming_the_setting(data, field, message) -> None:
    with pytest.raises(SettingsError) as refused:
        KubernetesSettings.parse(data)
    assert refused.value.field == field and message in str(refused.value)


def test_missing_required_settings_have_their_own_code() -> None:
    with pytest.raises(SettingsError) as refused:
        KubernetesSettings.parse({"namespace": "n"})
    assert (refused.value.field, refused.value.code) == ("deployment", "required")


def test_a_partial_check_takes_what_an_environment_shares_without_the_required_rest() -> None:
    assert KubernetesSettings.clean_values({"namespace": "shop"}, partial=True) == {"namespace": "shop"}
    with pytest.raises(SettingsError, match="timeout"):
        KubernetesSettings.clean_values({"timeout": "soon"}, partial=True)


@pytest.mark.parametrize(
    "settings", [DockerSettings.parse({"port": 8080, "volumes": ["d:/x"]}), KubernetesSettings.parse(K8S)]
)
def test_to_dict_parses_back_to_the_same_settings(settings) -> None:
    data = settings.to_dict()
    assert type(settings).parse(data) == settings
    assert set(data) == {info.name for info in type(settings).describe()}


def test_parse_settings_picks_the_kind_and_refuses_unknown_ones() -> None:
    assert isinstance(parse_settings("docker", {"port": 1}), DockerSettings)
    assert isinstance(parse_settings("kubernetes", K8S), KubernetesSettings)
    with pytest.raises(TargetError, match="unknown target kind 'ftp'"):
        parse_settings("ftp", {})


def test_settings_are_frozen() -> None:
    settings = DockerSettings.parse({"port": 1})
    with pytest.raises(AttributeError):
        settings.port = 2  # type: ignore[misc]
