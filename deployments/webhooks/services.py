"""Database writes of the webhooks app: the secret, the rules and each delivery."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.utils import timezone

from .. import crypto, permissions
from ..models import Deployment, Placement, Trigger
from ..services import DeployRefused, audit, deployment_request
from .models import Outcome, WebhookConfig, WebhookDelivery
from .providers import Push

# The one user per installation that webhooks deploy as. It has no usable password,
# so nobody logs in as it; it is an admin so that the placement's rules (written by
# an admin) are the only gate besides policy: approvals, locks and freezes hold it
# exactly as they hold a click.
SERVICE_USERNAME = "shipmate-webhooks"


def service_user() -> Any:
    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(
        username=SERVICE_USERNAME, defaults={"first_name": "Webhooks", "is_active": True}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
        user.groups.add(Group.objects.get_or_create(name=permissions.ADMINS)[0])
    return user


def _config(placement: Placement) -> WebhookConfig:
    return WebhookConfig.objects.select_for_update().get_or_create(placement=placement)[0]


@transaction.atomic
def webhook_secret_regenerate(*, user: Any, placement: Placement, source_ip: str | None = None) -> str:
    """A new secret for the placement; the old one stops working. Returns it: shown once."""
    if not permissions.can_manage(user):
        raise DeployRefused("Only admins manage webhooks.")
    config = _config(placement)
    secret = secrets.token_urlsafe(32)
    replaced = config.has_secret
    config.secret_encrypted = crypto.encrypt(secret)
    config.secret_created_at = timezone.now()
    config.save(update_fields=["secret_encrypted", "secret_created_at"])
    audit(
        user,
        "webhook.secret_regenerate" if replaced else "webhook.secret_create",
        placement,
        source_ip=source_ip,
    )
    return secret


@transaction.atomic
def webhook_rules_set(
    *, user: Any, placement: Placement, branch_patterns: str, tag_patterns: str, source_ip: str | None = None
) -> WebhookConfig:
    if not permissions.can_manage(user):
        raise DeployRefused("Only admins manage webhooks.")
    config = _config(placement)
    config.branch_patterns = " ".join(branch_patterns.replace(",", " ").split())
    config.tag_patterns = " ".join(tag_patterns.replace(",", " ").split())
    config.save(update_fields=["branch_patterns", "tag_patterns"])
    audit(
        user,
        "webhook.rules",
        placement,
        source_ip=source_ip,
        branches=config.branch_patterns,
        tags=config.tag_patterns,
    )
    return config


@dataclass(frozen=True)
class Received:
    delivery: WebhookDelivery
    status: int


def _record(
    placement: Placement, provider: str, delivery_id: str, push: Push, **fields: Any
) -> WebhookDelivery:
    return WebhookDelivery.objects.create(
        placement=placement,
        provider=provider,
        delivery_id=delivery_id,
        event=push.event,
        ref=push.ref,
        commit_sha=push.commit_sha,
        pusher=push.pusher,
        **fields,
    )


def _claim(placement: Placement, provider: str, delivery_id: str, push: Push) -> WebhookDelivery | None:
    """Record the delivery as received, or None when its id was received before."""
    seen = WebhookDelivery.objects.filter(placement=placement, provider=provider, delivery_id=delivery_id)
    if delivery_id and seen.exclude(outcome=Outcome.DUPLICATE).exists():
        return None
    try:
        with transaction.atomic():
            # Provisional outcome; set once we know. The unique constraint settles a race.
            return _record(
                placement,
                provider,
                delivery_id,
                push,
                outcome=Outcome.IGNORED,
                reason="Stopped before an outcome.",
            )
    except IntegrityError:
        return None


def _finish(
    delivery: WebhookDelivery, outcome: str, reason: str = "", deployment: Deployment | None = None
) -> None:
    delivery.outcome, delivery.reason, delivery.deployment = outcome, reason, deployment
    delivery.save(update_fields=["outcome", "reason", "deployment"])


def webhook_receive(
    *, placement: Placement, provider: str, delivery_id: str, push: Push, source_ip: str | None = None
) -> Received:
    """Act on a verified delivery: deploy the pushed commit if a rule matches.

    Not atomic as a whole: `deployment_request` may talk to the git server and must
    not hold a transaction open; each write below is atomic on its own.
    """
    delivery = _claim(placement, provider, delivery_id, push)
    if delivery is None:
        dup = _record(
            placement, provider, delivery_id, push, outcome=Outcome.DUPLICATE, reason="Replayed id."
        )
        return Received(dup, 200)
    if not push.is_push:
        _finish(delivery, Outcome.IGNORED, f"Not a push event ({push.event or 'none'}).")
        return Received(delivery, 202)
    if push.is_deletion:
        _finish(delivery, Outcome.IGNORED, "The push deletes the ref.")
        return Received(delivery, 202)
    rule = placement.webhook.matching_rule(push.ref)
    if rule is None:
        _finish(delivery, Outcome.NO_MATCH, f"No rule matches {push.ref}.")
        return Received(delivery, 202)
    try:
        deployment = _deploy(
            placement=placement, delivery=delivery, push=push, rule=rule, source_ip=source_ip
        )
    except DeployRefused as exc:
        _finish(delivery, Outcome.REFUSED, str(exc))
        return Received(delivery, 409)
    _finish(delivery, Outcome.DEPLOYED, f"Matched {rule}.", deployment)
    return Received(delivery, 201)


def _deploy(
    *, placement: Placement, delivery: WebhookDelivery, push: Push, rule: str, source_ip: str | None
) -> Deployment:
    if not placement.enabled:
        raise DeployRefused(f"{placement} is disabled.")
    # confirm_older: a push is its author's word (a force-push back is deliberate), and
    # it skips the only network call, so the request and its audit share one transaction.
    with transaction.atomic():
        user = service_user()
        # The pushed commit, not the branch: a later push must not change what this one ships.
        deployment = deployment_request(
            user=user,
            repository=placement.repository,
            environment=placement.environment,
            ref=push.commit_sha,
            trigger=Trigger.WEBHOOK,
            source_ip=source_ip,
            confirm_older=True,
        )
        audit(
            user,
            "webhook.push",
            deployment,
            source_ip=source_ip,
            provider=delivery.provider,
            delivery=delivery.delivery_id,
            ref=push.ref,
            pusher=push.pusher,
            rule=rule,
        )
    return deployment
