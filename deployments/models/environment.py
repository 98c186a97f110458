from __future__ import annotations

import calendar
import hashlib
import re
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from .. import crypto
from ..pipeline.targets.settings import SettingsError, settings_class
from .repository import slug_validator

VARIABLE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_APPROVALS = 20
MAX_APPROVAL_TTL = 525600  # a year, in minutes


def validate_web_url(value: str) -> None:
    """An http(s) link for people (a placement's "Open app"): no javascript: or file:,
    and a host the way the worker's URL parser reads it (outbound.validate_http_url)."""
    from ..pipeline import outbound

    try:
        outbound.validate_http_url(value)
    except outbound.OutboundError as exc:
        raise ValidationError(str(exc)) from None


def validate_smoke_url(value: str) -> None:
    """A URL the worker will GET: the checks of `validate_web_url` plus, for IP literals
    and localhost names, the outbound policy, with the worker's message. DNS names are
    checked again when the worker connects."""
    from ..pipeline import outbound

    try:
        outbound.validate_http_url(value, policy=outbound.current_policy())
    except outbound.OutboundError as exc:
        raise ValidationError(str(exc)) from None


def setting_error(field: str, message: str) -> ValidationError:
    """An error of `target_settings` that remembers which setting it is about, so a form
    with one input per setting can show it next to that input (see forms_manage)."""
    error = ValidationError(message, code="invalid_setting")
    error.setting = field  # type: ignore[attr-defined]
    return error


class TargetKind(models.TextChoices):
    DOCKER = "docker", "Docker host"
    KUBERNETES = "kubernetes", "Kubernetes"


class Environment(models.Model):
    name = models.CharField(max_length=40, unique=True, validators=[slug_validator])
    order = models.PositiveIntegerField(default=0, help_text="dev < stage < live")
    target_kind = models.CharField(max_length=20, choices=TargetKind.choices, default=TargetKind.DOCKER)
    # Defaults shared by the environment's placements; the keys are those of the target
    # kind's settings dataclass (pipeline/targets/settings.py).
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

    def clean(self) -> None:
        """The rules of the Manage form, the Django admin and the YAML apply alike."""
        errors: dict[str, ValidationError | str] = {}
        if self.smoke_url:
            try:
                validate_smoke_url(self.smoke_url)
            except ValidationError as exc:
                errors["smoke_url"] = exc
        # Unconverted values failed clean_fields() already.
        if isinstance(self.approvals_required, int) and not 1 <= self.approvals_required <= MAX_APPROVALS:
            errors["approvals_required"] = f"From 1 to {MAX_APPROVALS}."
        ttl = self.approval_ttl_minutes
        if isinstance(ttl, int) and not 1 <= ttl <= MAX_APPROVAL_TTL:
            errors["approval_ttl_minutes"] = f"From 1 to {MAX_APPROVAL_TTL} minutes."
        if not isinstance(self.target_settings, dict):
            errors["target_settings"] = "A mapping of setting names to values."
        elif self.target_kind in (TargetKind.DOCKER, TargetKind.KUBERNETES):
            # Only what is given: each placement brings what its application needs.
            try:
                settings_class(self.target_kind).clean_values(
                    self.target_settings, bind_roots=settings.BIND_MOUNT_ROOTS, partial=True
                )
            except SettingsError as exc:
                errors["target_settings"] = setting_error(exc.field, str(exc))
        if errors:
            raise ValidationError(errors)

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

    def clean(self) -> None:
        if not VARIABLE_NAME_RE.match(self.name or ""):
            raise ValidationError({"name": "Use letters, digits and underscores, not starting with a digit."})

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

    @property
    def when(self) -> str:
        """When the window holds, in the server's TIME_ZONE and naming it ("Every Friday at
        16:00 for 120 min (Europe/Berlin)"), so nobody has to guess whose 16:00 it is."""
        zone = timezone.get_current_timezone_name()
        if self.kind == self.Kind.WEEKLY:
            day = calendar.day_name[self.weekday] if self.weekday is not None else "?"
            at = self.start_time.strftime("%H:%M") if self.start_time else "?"
            return f"Every {day} at {at} for {self.duration_minutes} min ({zone})"
        start, end = (
            timezone.localtime(t).strftime("%Y-%m-%d %H:%M") if t else "?"
            for t in (self.starts_at, self.ends_at)
        )
        return f"{start} → {end} ({zone})"

    def clean(self) -> None:
        """A one-off window needs its start and end, a weekly one its day, time and
        length; the fields of the other kind are cleared."""
        errors: dict[str, str] = {}
        if self.reason and not self.reason.strip():  # an empty one is refused as blank
            errors["reason"] = "A freeze window needs a reason."
        self.reason = (self.reason or "").strip()
        if self.kind == self.Kind.ONCE:
            self.weekday = self.start_time = self.duration_minutes = None
            if not self.starts_at:
                errors["starts_at"] = "Required for a one-off window."
            if not self.ends_at:
                errors["ends_at"] = "Required for a one-off window."
            elif self.starts_at and self.ends_at <= self.starts_at:
                errors["ends_at"] = "Must be after the start."
        elif self.kind == self.Kind.WEEKLY:
            self.starts_at = self.ends_at = None
            if not isinstance(self.weekday, int) or not 0 <= self.weekday <= 6:
                errors["weekday"] = "Pick a day of the week."
            if self.start_time is None:
                errors["start_time"] = "Required for a weekly window."
            if not isinstance(self.duration_minutes, int) or self.duration_minutes <= 0:
                errors["duration_minutes"] = "Must be more than zero minutes."
        if errors:
            raise ValidationError(errors)

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
