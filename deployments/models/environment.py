from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.utils import timezone

from .. import crypto
from .repository import slug_validator


class TargetKind(models.TextChoices):
    DOCKER = "docker", "Docker host"
    KUBERNETES = "kubernetes", "Kubernetes"


class Environment(models.Model):
    name = models.CharField(max_length=40, unique=True, validators=[slug_validator])
    order = models.PositiveIntegerField(default=0, help_text="dev < stage < live")
    target_kind = models.CharField(max_length=20, choices=TargetKind.choices, default=TargetKind.DOCKER)
    # Docker: docker_host, port, container_port, network_mode, bind_host,
    # health_path, health_timeout. Kubernetes: namespace, deployment, container,
    # context, kubeconfig_path, in_cluster, timeout, max_restarts.
    target_settings = models.JSONField(default=dict, blank=True)
    kubeconfig_encrypted = models.TextField(blank=True, default="", editable=False)
    smoke_url = models.CharField(
        max_length=500, blank=True, help_text="Optional URL checked after the rollout."
    )

    # Policy.
    deploy_groups = models.ManyToManyField(Group, blank=True, related_name="deployable_environments")
    approve_groups = models.ManyToManyField(Group, blank=True, related_name="approvable_environments")
    requires_approval = models.BooleanField(default=False)
    approvals_required = models.PositiveSmallIntegerField(default=1)
    allow_self_approval = models.BooleanField(default=False)
    approval_ttl_minutes = models.PositiveIntegerField(default=240)

    # Lock.
    locked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    locked_reason = models.CharField(max_length=300, blank=True)
    locked_at = models.DateTimeField(null=True, blank=True)
    lock_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["order", "name"]

    def __str__(self) -> str:
        return self.name

    @property
    def needed_approvals(self) -> int:
        return self.approvals_required if self.requires_approval else 0

    @property
    def is_locked(self) -> bool:
        if not self.locked_at:
            return False
        return self.lock_expires_at is None or self.lock_expires_at > timezone.now()

    @property
    def kubeconfig(self) -> str:
        return crypto.decrypt(self.kubeconfig_encrypted)

    def set_kubeconfig(self, text: str) -> None:
        self.kubeconfig_encrypted = crypto.encrypt(text) if text else ""

    def active_freeze(self, at: datetime | None = None) -> FreezeWindow | None:
        at = at or timezone.now()
        for window in self.freeze_windows.all():
            if window.covers(at):
                return window
        return None


def _value_hash(env_id: int | None, name: str, value: str) -> str:
    # Keyed so a low-entropy secret cannot be guessed from the stored hash.
    key = (settings.SECRET_KEY + f":{env_id}:{name}").encode()
    return hashlib.blake2b(value.encode(), key=key[:64], digest_size=16).hexdigest()


class VariableValue(models.Model):
    """A name and a value given to the running application; secrets encrypted at rest."""

    name = models.CharField(max_length=100)
    is_secret = models.BooleanField(default=False)
    plain_value = models.TextField(blank=True, default="")
    encrypted_value = models.TextField(blank=True, default="", editable=False)

    class Meta:
        abstract = True
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def value(self) -> str:
        return crypto.decrypt(self.encrypted_value) if self.is_secret else self.plain_value

    def set_value(self, value: str) -> None:
        if self.is_secret:
            self.encrypted_value, self.plain_value = crypto.encrypt(value), ""
        else:
            self.plain_value, self.encrypted_value = value, ""

    @property
    def display_value(self) -> str:
        return "••••••" if self.is_secret else self.plain_value


class Variable(VariableValue):
    """Shared by every application placed in the environment; a placement's own wins."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="variables")

    class Meta(VariableValue.Meta):
        constraints = [models.UniqueConstraint(fields=["environment", "name"], name="unique_variable_name")]


class FreezeWindow(models.Model):
    class Kind(models.TextChoices):
        ONCE = "once", "One-off"
        WEEKLY = "weekly", "Weekly"

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="freeze_windows")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.ONCE)
    reason = models.CharField(max_length=200)
    # One-off windows.
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    # Weekly windows, in the server's TIME_ZONE: weekday 0 = Monday.
    weekday = models.PositiveSmallIntegerField(null=True, blank=True)
    start_time = models.TimeField(null=True, blank=True)
    duration_minutes = models.PositiveIntegerField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.environment}: {self.reason}"

    def covers(self, at: datetime) -> bool:
        if self.kind == self.Kind.ONCE:
            return bool(self.starts_at and self.ends_at and self.starts_at <= at < self.ends_at)
        if self.weekday is None or self.start_time is None or not self.duration_minutes:
            return False
        local = timezone.localtime(at)
        length = timedelta(minutes=self.duration_minutes)
        # A window may start on an earlier day and run past midnight.
        for days_back in range(0, 8):
            day = local.date() - timedelta(days=days_back)
            if day.weekday() != self.weekday:
                continue
            start = timezone.make_aware(datetime.combine(day, self.start_time), local.tzinfo)
            if start <= local < start + length:
                return True
        return False
