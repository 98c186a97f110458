"""One application (a Repository) in one environment: its own target there."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from .environment import Environment, TargetKind, VariableValue, _value_hash
from .repository import Repository

# Keys that say where an application runs; two placements may not share them.
DOCKER_IDENTITY = ("docker_host", "port")
KUBERNETES_IDENTITY = ("namespace", "deployment", "container")
# Keys a placement must end up with, from its own settings or its environment's.
REQUIRED_KEYS = {TargetKind.DOCKER: ("port",), TargetKind.KUBERNETES: KUBERNETES_IDENTITY}


class Placement(models.Model):
    """The application's target in the environment.

    `target_settings` holds the application's own keys (docker: port, container_port,
    network_mode, health_path, …; kubernetes: namespace, deployment, container) and
    overrides the environment's, which hold the connection and shared defaults
    (docker_host; kubeconfig, context, namespace). Queues, exclusivity and "what runs
    now" are per placement; the environment's policy, locks and freezes cover them all.
    """

    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="placements")
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="placements")
    target_settings = models.JSONField(default=dict, blank=True)
    smoke_url = models.CharField(max_length=500, blank=True, help_text="Empty: the environment's.")
    public_url = models.CharField(max_length=500, blank=True, help_text='The "Open app" link.')
    enabled = models.BooleanField(default=True, help_text="Off: nothing deploys here.")
    # A lock on this application in this environment only; the environment's lock holds all.
    locked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    locked_reason = models.CharField(max_length=300, blank=True)
    locked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["environment__order", "repository__name"]
        constraints = [
            models.UniqueConstraint(fields=["repository", "environment"], name="one_placement_per_pair")
        ]

    def __str__(self) -> str:
        return f"{self.repository} in {self.environment}"

    @property
    def is_locked(self) -> bool:
        return self.locked_at is not None

    @property
    def effective_settings(self) -> dict[str, Any]:
        return {**(self.environment.target_settings or {}), **(self.target_settings or {})}

    @property
    def effective_smoke_url(self) -> str:
        return self.smoke_url or self.environment.smoke_url

    @property
    def target_name(self) -> str:
        return f"shipmate-{self.repository.name}-{self.environment.name}"

    # -- configuration: the environment's variables, overridden by the placement's own --------

    def config_variables(self) -> list[VariableValue]:
        own = list(self.variables.all())
        names = {v.name for v in own}
        shared = [v for v in self.environment.variables.all() if v.name not in names]
        return sorted(shared + own, key=lambda v: v.name)

    def secret_values(self) -> list[str]:
        return [v.value for v in self.config_variables() if v.is_secret and v.value]

    def config_snapshot(self) -> dict[str, dict[str, object]]:
        """Per variable: a keyed hash of its value and whether it is secret (see Environment)."""
        return {
            v.name: {"hash": _value_hash(self.environment_id, v.name, v.value), "secret": v.is_secret}
            for v in self.config_variables()
        }

    def config_hash(self) -> str:
        """What an approval binds besides commit and digest. For a placement with no
        settings or variables of its own it equals its environment's config_hash()."""
        payload = json.dumps(
            {
                "vars": self.config_snapshot(),
                "target": self.effective_settings,
                "kind": self.environment.target_kind,
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    def identity(self) -> tuple[Any, ...] | None:
        """What no other placement may share: engine and port, or the Kubernetes object."""
        settings = self.effective_settings
        if self.environment.target_kind == TargetKind.KUBERNETES:
            if not settings.get("deployment"):
                return None
            return ("kubernetes", *(str(settings.get(key) or "") for key in KUBERNETES_IDENTITY))
        if not settings.get("port"):
            return None
        return ("docker", str(settings.get("docker_host") or ""), str(settings["port"]))

    def clashing_placement(self) -> Placement | None:
        """Another enabled placement with the same identity, if any."""
        mine = self.identity()
        if mine is None or not self.enabled:
            return None
        others = (
            Placement.objects.filter(enabled=True, environment__target_kind=self.environment.target_kind)
            .exclude(pk=self.pk)
            .select_related("repository", "environment")
        )
        return next((other for other in others if other.identity() == mine), None)

    def clean(self) -> None:
        if not self.environment_id or not self.repository_id:
            return
        settings_now = self.effective_settings
        missing = [k for k in REQUIRED_KEYS.get(self.environment.target_kind, ()) if not settings_now.get(k)]
        if missing:
            raise ValidationError(
                {
                    "target_settings": f"{', '.join(missing)} required, here or in {self.environment}'s settings."
                }
            )
        if self.environment.target_kind == TargetKind.DOCKER:
            # The same check the Docker target makes at rollout.
            from ..pipeline.base import TargetError
            from ..pipeline.targets.docker import parse_volumes

            try:
                parse_volumes(self.effective_settings.get("volumes"), settings.BIND_MOUNT_ROOTS)
            except TargetError as exc:
                raise ValidationError({"target_settings": str(exc)}) from None
        other = self.clashing_placement()
        if other is not None:
            what = "port" if self.environment.target_kind == TargetKind.DOCKER else "Deployment/container"
            raise ValidationError(
                {
                    "target_settings": f"{other} already uses this {what} ({', '.join(map(str, self.identity() or ()))})."
                }
            )


class PlacementVariable(VariableValue):
    """One application's own variable in one environment; it overrides the environment's."""

    placement = models.ForeignKey(Placement, on_delete=models.CASCADE, related_name="variables")

    class Meta(VariableValue.Meta):
        constraints = [
            models.UniqueConstraint(fields=["placement", "name"], name="unique_placement_variable_name")
        ]
