"""A placement's webhook: its secret and rules, and a record of every delivery."""

from __future__ import annotations

from fnmatch import fnmatchcase

from django.db import models

from .. import crypto
from ..models import Deployment, Placement


class Provider(models.TextChoices):
    GITHUB = "github", "GitHub"
    GITLAB = "gitlab", "GitLab"
    GITEA = "gitea", "Gitea / Forgejo"


class Outcome(models.TextChoices):
    DEPLOYED = "deployed", "Deployed"
    NO_MATCH = "no_match", "No matching rule"
    IGNORED = "ignored", "Ignored"
    REFUSED = "refused", "Refused"
    DUPLICATE = "duplicate", "Duplicate"


def split_patterns(text: str) -> list[str]:
    return [p for p in text.replace(",", " ").split() if p]


class WebhookConfig(models.Model):
    """The placement's webhook secret (encrypted: verifying an HMAC needs the secret
    itself, so it cannot be hashed) and its rules: fnmatch patterns, space-separated."""

    placement = models.OneToOneField(Placement, on_delete=models.CASCADE, related_name="webhook")
    secret_encrypted = models.TextField(blank=True)
    secret_created_at = models.DateTimeField(null=True, blank=True)
    branch_patterns = models.CharField(
        max_length=500, blank=True, help_text="Branches that deploy on push, e.g. main release/*"
    )
    tag_patterns = models.CharField(max_length=500, blank=True, help_text="Tags that deploy on push, e.g. v*")

    def __str__(self) -> str:
        return f"webhook of {self.placement}"

    @property
    def has_secret(self) -> bool:
        return bool(self.secret_encrypted)

    @property
    def secret(self) -> str:
        return crypto.decrypt(self.secret_encrypted)

    def matching_rule(self, ref: str) -> str | None:
        """The rule (e.g. "branch release/*") that `ref` (refs/heads/… or refs/tags/…) matches."""
        for prefix, kind, text in (
            ("refs/heads/", "branch", self.branch_patterns),
            ("refs/tags/", "tag", self.tag_patterns),
        ):
            if ref.startswith(prefix):
                name = ref[len(prefix) :]
                for pattern in split_patterns(text):
                    if fnmatchcase(name, pattern):
                        return f"{kind} {pattern}"
        return None


class WebhookDelivery(models.Model):
    placement = models.ForeignKey(Placement, on_delete=models.CASCADE, related_name="webhook_deliveries")
    provider = models.CharField(max_length=10, choices=Provider.choices)
    delivery_id = models.CharField(max_length=200, blank=True)
    event = models.CharField(max_length=100, blank=True)
    ref = models.CharField(max_length=300, blank=True)
    commit_sha = models.CharField(max_length=64, blank=True)
    pusher = models.CharField(max_length=200, blank=True)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    reason = models.TextField(blank=True)
    deployment = models.ForeignKey(
        Deployment, null=True, blank=True, on_delete=models.SET_NULL, related_name="webhook_deliveries"
    )

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            # A replay is recorded as a duplicate; only the first delivery of an id counts.
            models.UniqueConstraint(
                fields=["placement", "provider", "delivery_id"],
                condition=~models.Q(delivery_id="") & ~models.Q(outcome="duplicate"),
                name="one_delivery_per_id",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_provider_display()} {self.event} {self.ref} → {self.outcome}"
