"""Channels, what they subscribe to, and a record of every delivery and attempt."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from .. import crypto
from ..models import Deployment, Environment, Placement, Repository
from ..pipeline import outbound
from . import delivery


class Kind(models.TextChoices):
    WEBHOOK = delivery.WEBHOOK, "Webhook (signed JSON)"
    SLACK = delivery.SLACK, "Slack-compatible (Slack, Mattermost, Rocket.Chat)"
    GITHUB = delivery.GITHUB, "GitHub commit status"
    GITLAB = delivery.GITLAB, "GitLab commit status"


class Event(models.TextChoices):
    REQUESTED = "requested", "Requested"
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
    APPROVED = "approved", "Approved"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    ROLLED_BACK = "rolled_back", "Rolled back"
    CANCELLED = "cancelled", "Cancelled"
    REJECTED = "rejected", "Rejected"
    LOCK_CHANGED = "lock_changed", "Lock changed"


COMMIT_STATUS_KINDS = (Kind.GITHUB, Kind.GITLAB)


def validate_outbound_url(value: str) -> None:
    """The smoke URLs' rule: http(s), a valid host, and an IP-literal or localhost host
    judged by SHIPMATE_ALLOW_INTERNAL now; a DNS name is judged again at every send."""
    try:
        outbound.validate_http_url(value, policy=outbound.current_policy())
    except outbound.OutboundError as exc:
        raise ValidationError(str(exc)) from None


class Channel(models.Model):
    name = models.SlugField(max_length=60, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    url = models.CharField(
        "URL",
        max_length=500,
        validators=[validate_outbound_url],
        help_text="Where to post; for commit statuses the API base URL "
        "(https://api.github.com, https://gitlab.example.com/api/v4).",
    )
    repository = models.ForeignKey(
        Repository,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="notification_channels",
        help_text="Commit statuses: the application whose commits get them (its token).",
    )
    project = models.CharField(
        max_length=300,
        blank=True,
        help_text="Commit statuses: owner/repo (GitHub) or group/project (GitLab); "
        "empty: taken from the application's git URL.",
    )
    events = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    # Webhook: the signing secret; commit statuses: the API token. Encrypted: both must
    # be used as they are, so they cannot be hashed.
    secret_encrypted = models.TextField(blank=True, editable=False)
    secret_set_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_commit_status(self) -> bool:
        return self.kind in COMMIT_STATUS_KINDS

    @property
    def has_secret(self) -> bool:
        return bool(self.secret_encrypted)

    @property
    def secret(self) -> str:
        return crypto.decrypt(self.secret_encrypted)

    def set_secret(self, value: str) -> None:
        from django.utils import timezone

        self.secret_encrypted = crypto.encrypt(value)
        self.secret_set_at = timezone.now()

    @property
    def url_shown(self) -> str:
        """A Slack-style URL carries its secret in the path: show the host only."""
        if self.kind == Kind.SLACK:
            parts = outbound.urlsplit(self.url)
            return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}/…"
        return outbound.redact(self.url)

    def resolved_project(self) -> str:
        if self.project:
            return self.project.strip("/")
        if self.repository is None:
            return ""
        return delivery.project_from_git_url(self.repository.git_url)

    def event_labels(self) -> list[str]:
        labels = dict(Event.choices)
        return [labels.get(e, e) for e in self.events]

    def clean(self) -> None:
        errors: dict[str, str] = {}
        unknown = [e for e in self.events or [] if e not in Event.values]
        if not isinstance(self.events, list) or unknown:
            errors["events"] = (
                f"Unknown events: {', '.join(map(str, unknown))}. Known: {', '.join(Event.values)}."
            )
        if self.is_commit_status:
            if self.repository_id is None:
                errors["repository"] = "A commit status channel belongs to one application (its token)."
            elif not self.resolved_project():
                errors["project"] = "Cannot tell the project from the application's git URL: set it here."
            if Event.LOCK_CHANGED in (self.events or []):
                errors["events"] = "A lock has no commit: commit statuses cannot subscribe to lock changes."
        if errors:
            raise ValidationError(errors)

    def target(self) -> delivery.Target:
        return delivery.Target(
            kind=self.kind, url=self.url, secret=self.secret, project=self.resolved_project()
        )


class Subscription(models.Model):
    """A channel hears its events from one environment (every placement in it) or one
    placement (one application in one environment)."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="subscriptions")
    environment = models.ForeignKey(
        Environment,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="notification_subscriptions",
    )
    placement = models.ForeignKey(
        Placement, null=True, blank=True, on_delete=models.CASCADE, related_name="notification_subscriptions"
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(environment__isnull=False, placement__isnull=True)
                | models.Q(environment__isnull=True, placement__isnull=False),
                name="subscription_one_scope",
            ),
            models.UniqueConstraint(
                fields=["channel", "environment"], name="one_subscription_per_environment"
            ),
            models.UniqueConstraint(fields=["channel", "placement"], name="one_subscription_per_placement"),
        ]

    def __str__(self) -> str:
        return f"{self.channel} ← {self.environment or self.placement}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"  # refused for good (a 4xx, a refused address) or gave up


class Delivery(models.Model):
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="deliveries")
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    event = models.CharField(max_length=20)
    deployment = models.ForeignKey(
        Deployment, null=True, blank=True, on_delete=models.SET_NULL, related_name="notifications"
    )
    payload = models.JSONField(default=dict)
    status = models.CharField(
        max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING, db_index=True
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"

    def __str__(self) -> str:
        return f"{self.channel} {self.event} → {self.status}"

    @property
    def is_finished(self) -> bool:
        return self.status in (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED)

    @staticmethod
    def stale_claim() -> timedelta:
        """A claim older than this belongs to a worker that died mid-send."""
        return timedelta(seconds=settings.NOTIFY_TIMEOUT + 60)


class Attempt(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_set")
    number = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="one_attempt_per_number")]

    def __str__(self) -> str:
        return f"#{self.number}: {self.status_code or self.error}"

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300
