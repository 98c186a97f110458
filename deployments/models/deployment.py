from __future__ import annotations

import json
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from .. import crypto
from .environment import Environment
from .repository import Repository


def short_digest(image_digest: str) -> str:
    """`sha256:` and the first 12 hex digits of `registry/name@sha256:…`: the part that
    tells two images apart (the repository name before it is the same for every run)."""
    _, _, digest = image_digest.partition("@")
    return digest[:19]


class Status(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
    APPROVED = "approved", "Approved"
    # Built and tested ahead of its turn; waits for the placement's rollouts before it.
    READY = "ready", "Ready, waiting for its turn"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    ROLLED_BACK = "rolled_back", "Rolled back"
    REJECTED = "rejected", "Rejected"


FINISHED = {Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.ROLLED_BACK, Status.REJECTED}
# Waiting for a worker: a fresh request (to build), or a built or approved one that still
# has to roll out.
WAITING = {Status.QUEUED, Status.APPROVED, Status.READY}
# Waiting for their turn to roll out: built (or approved), not yet rolling out.
RELEASABLE = {Status.APPROVED, Status.READY}


class Phase(models.TextChoices):
    """What a running deployment does: builds may run ahead, rollouts go one at a time."""

    NONE = "", "Not running"
    BUILD = "build", "Checkout, build, test, push"
    RELEASE = "release", "Rollout and verify"


class Trigger(models.TextChoices):
    CLICK = "click", "Deploy button"
    WEBHOOK = "webhook", "Webhook"
    ROLLBACK = "rollback", "Rollback"
    PROMOTION = "promotion", "Promotion"


class StageStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"
    CANCELLED = "cancelled", "Cancelled"


STAGE_NAMES = ["checkout", "build", "test", "push", "approval", "rollout", "verify"]


class Deployment(models.Model):
    repository = models.ForeignKey(Repository, on_delete=models.PROTECT, related_name="deployments")
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="deployments")
    ref = models.CharField(max_length=250)
    commit_sha = models.CharField(max_length=40, blank=True)
    # The commit's committer date, recorded at checkout: where lead time for changes starts.
    committed_at = models.DateTimeField(null=True, blank=True)
    # The image-definition repository's commit, when the Dockerfile lives apart from the code.
    dockerfile_commit_sha = models.CharField(max_length=40, blank=True)
    image_digest = models.CharField(max_length=400, blank=True, help_text="name@sha256:…")
    config_hash = models.CharField(max_length=64, blank=True)
    config_snapshot = models.JSONField(default=dict, blank=True)
    # The variables this deployment rolled out, encrypted: what a rollback to it restores.
    released_config = models.TextField(blank=True, editable=False)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="deployments"
    )
    trigger = models.CharField(max_length=20, choices=Trigger.choices, default=Trigger.CLICK)
    rollback_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="rollbacks"
    )
    replaced = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="replaced_by",
        help_text="What the environment ran when this deployment rolled out.",
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    phase = models.CharField(max_length=10, choices=Phase.choices, blank=True, default=Phase.NONE)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    # Why the run was stopped when nobody clicked Cancel (the worker shut down), for its message.
    stop_reason = models.CharField(max_length=200, blank=True)
    break_glass_reason = models.TextField(blank=True)
    tests_passed = models.BooleanField(null=True)
    commits = models.JSONField(default=list, blank=True, help_text="Commits since what the environment ran.")
    pipeline_file = models.JSONField(
        default=dict, blank=True, help_text="The settings the commit's shipmate.yaml set (by its key names)."
    )

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    # Changes with every claim: a worker writes only while its token is current, so a
    # run the reaper took away from a stalled worker cannot be overwritten by it.
    claim_token = models.CharField(max_length=32, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Claims, one per phase run.")
    lost_count = models.PositiveSmallIntegerField(
        default=0, help_text="Times the reaper found the worker gone."
    )
    # What the image was built from besides the commit (Dockerfile, context, tests):
    # an image is reused only for the same commit *and* the same build key.
    build_key = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["environment", "status"]),
            # What runs on a placement now: the newest succeeded row, one index probe each.
            models.Index(
                fields=["environment", "repository", "status", "-finished_at", "-id"],
                name="deployment_placement_latest",
            ),
            # When a commit first appeared (the matrix's "behind" marker).
            models.Index(fields=["repository", "commit_sha", "created_at"], name="deployment_commit_first"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.repository} {self.ref} → {self.environment}"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED

    @property
    def short_sha(self) -> str:
        return self.commit_sha[:10]

    @property
    def short_digest(self) -> str:
        return short_digest(self.image_digest)

    @property
    def duration(self) -> timedelta | None:
        if not self.started_at:
            return None
        return (self.finished_at or timezone.now()) - self.started_at

    def released_variables(self) -> tuple[dict[str, str], frozenset[str]] | None:
        """(variables, names of the secret ones) as rolled out, or None if not recorded."""
        if not self.released_config:
            return None
        data = json.loads(crypto.decrypt(self.released_config))
        return data["variables"], frozenset(data["secret_names"])

    @property
    def target_name(self) -> str:
        """The name of what runs on the target: container, or Shipmate's labels."""
        return f"shipmate-{self.repository.name}-{self.environment.name}"


class Stage(models.Model):
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="stages")
    name = models.CharField(max_length=20)
    position = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=20, choices=StageStatus.choices, default=StageStatus.PENDING)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["position"]
        constraints = [models.UniqueConstraint(fields=["deployment", "name"], name="unique_stage")]

    def __str__(self) -> str:
        return self.name

    @property
    def duration(self) -> timedelta | None:
        if not self.started_at:
            return None
        return (self.finished_at or timezone.now()) - self.started_at


class LogLine(models.Model):
    """History of a deployment's log. The live copy is the Redis Stream; each row
    keeps its stream entry id so a client can resume from either store."""

    # No index of its own: unique_log_entry (deployment, entry_ms, entry_seq) serves every
    # lookup by deployment, and one index less makes each stored line cheaper.
    deployment = models.ForeignKey(
        Deployment, on_delete=models.CASCADE, related_name="log_lines", db_index=False
    )
    entry_ms = models.BigIntegerField()
    entry_seq = models.IntegerField()
    stage = models.CharField(max_length=20, blank=True)
    text = models.TextField()
    # 1-based place in the deployment's whole log, given by the writer; 0 on lines stored
    # before numbers were (their number is counted when asked).
    number = models.PositiveIntegerField(default=0, db_default=0)

    class Meta:
        ordering = ["entry_ms", "entry_seq"]
        constraints = [
            models.UniqueConstraint(fields=["deployment", "entry_ms", "entry_seq"], name="unique_log_entry")
        ]

    def __str__(self) -> str:
        return f"{self.event_id} {self.text[:60]}"

    @property
    def event_id(self) -> str:
        return f"{self.entry_ms}-{self.entry_seq}"


class Approval(models.Model):
    class Decision(models.TextChoices):
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="approvals")
    approver = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decision = models.CharField(max_length=10, choices=Decision.choices)
    comment = models.TextField(blank=True)
    # What was approved: any change to these voids the approval.
    commit_sha = models.CharField(max_length=40)
    image_digest = models.CharField(max_length=400)
    config_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.decision} of #{self.deployment_id} by {self.approver_id}"

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()

    def binds(self, deployment: Deployment, config_hash: str) -> bool:
        return (
            self.commit_sha == deployment.commit_sha
            and self.image_digest == deployment.image_digest
            and self.config_hash == config_hash
        )
