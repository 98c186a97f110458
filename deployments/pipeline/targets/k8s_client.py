"""Connecting to a Kubernetes API."""

from __future__ import annotations

import json
import re

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from ..base import TargetError


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        try:
            message = json.loads(exc.body or "").get("message")
        except (ValueError, AttributeError):
            message = None
        return f"HTTP {exc.status}: {message or exc.reason}"
    reason = getattr(exc, "reason", None) or exc
    # urllib3 prefixes the reason with a connection object repr; users need only the cause.
    return re.sub(r"<[^>]+>:\s*", "", str(reason))


def build_api_client(
    *, kubeconfig: str, kubeconfig_path: str, in_cluster: bool, context: str | None
) -> client.ApiClient:
    """One ApiClient per target; the library's global default configuration stays untouched."""
    try:
        if kubeconfig.strip():
            config_dict = yaml.safe_load(kubeconfig)
            if not isinstance(config_dict, dict):
                raise TargetError("the kubeconfig is not a YAML mapping")
            return config.new_client_from_config_dict(config_dict, context=context, persist_config=False)
        if kubeconfig_path:
            return config.new_client_from_config(kubeconfig_path, context=context, persist_config=False)
        if in_cluster:
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
            return client.ApiClient(configuration)
    except (ConfigException, yaml.YAMLError, OSError, ValueError, KeyError, TypeError) as exc:
        raise TargetError(f"invalid Kubernetes connection settings: {exc}") from exc
    raise TargetError("Kubernetes target needs a kubeconfig, a kubeconfig_path or in_cluster")
