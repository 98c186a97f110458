"""One application (a Repository) in one environment: its own target there."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from ..pipeline import outbound
from ..pipeline.targets.settings import DockerSettings, SettingsError, TargetSettings, parse_settings
from .environment import (
    Environment,
    TargetKind,
    VariableValue,
    _value_hash,
    setting_error,
    validate_smoke_url,
    validate_web_url,
)
from .repository import Repository

# Keys that say where an application runs; two placements may not share them.
KUBERNETES_IDENTITY = ("namespace", "deployment", "container")


class Placement(models.Model):
    """The application's target in the environment.

    `target_settings` holds the application's own settings (docker: port, volumes, …;
    kubernetes: deployment, container) and overrides the environment's, which hold the
    connection and shared defaults (docker_host; context, namespace). The keys, types
    and rules are the target kind's settings dataclass (pipeline/targets/settings.py). Queues, exclusivity and "what runs
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

    def target_config(self, *, health_path: str | None = None) -> TargetSettings:
        """The effective settings, parsed: what the worker builds the target from.
        `health_path` (from the commit's shipmate.yaml) replaces the configured one."""
        data = self.effective_settings
        if health_path:
            data["health_path"] = health_path
        return parse_settings(self.environment.target_kind, data, bind_roots=settings.BIND_MOUNT_ROOTS)

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
        self._clean_urls()
        if not self.environment_id or not self.repository_id:
            return
        # The same parse() the worker builds the target from.
        try:
            config = self.target_config()
        except SettingsError as exc:
            if exc.code == "required":
                message = f"{exc.field} required, here or in {self.environment}'s settings."
            else:
                message = str(exc)
            raise ValidationError({"target_settings": setting_error(exc.field, message)}) from None
        if isinstance(config, DockerSettings):
            # The worker refuses a health host the outbound policy refuses; say so now.
            try:
                outbound.current_policy().check_host_literal(config.health_host)
            except outbound.OutboundRefused as exc:
                raise ValidationError({"target_settings": setting_error("health_host", str(exc))}) from None
        other = self.clashing_placement()
        if other is not None:
            docker = self.environment.target_kind == TargetKind.DOCKER
            what = "port" if docker else "Deployment/container"
            where = ", ".join(map(str, self.identity() or ()))
            message = f"{other} already uses this {what} ({where})."
            raise ValidationError(
                {"target_settings": setting_error("port" if docker else "deployment", message)}
            )

    def _clean_urls(self) -> None:
        errors: dict[str, ValidationError] = {}
        for name, validate in (("smoke_url", validate_smoke_url), ("public_url", validate_web_url)):
            value = getattr(self, name)
            if value:
                try:
                    validate(value)
                except ValidationError as exc:
                    errors[name] = exc
        if errors:
            raise ValidationError(errors)


class PlacementVariable(VariableValue):
    """One application's own variable in one environment; it overrides the environment's."""

    placement = models.ForeignKey(Placement, on_delete=models.CASCADE, related_name="variables")

    class Meta(VariableValue.Meta):
        constraints = [
            models.UniqueConstraint(fields=["placement", "name"], name="unique_placement_variable_name")
        ]
