"""API actions are audited via="api"; the pages' actions are not, also after an API call."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from deployments.models import AuditEvent
from deployments.services import audit, audit_context

pytestmark = pytest.mark.django_db


def test_audit_context_marks_only_the_events_inside_it(dev):
    with audit_context(via="api"):
        inside = audit(dev, "test.inside")
    outside = audit(dev, "test.outside")
    assert inside.details == {"via": "api"} and outside.details == {}


def test_a_page_action_after_an_api_action_is_not_marked_api(release, dev_env, api_as):
    api_as(release).post(reverse("api_environment_lock", args=["dev"]), {"reason": "from the api"})
    browser = Client()
    browser.force_login(release)
    browser.post(reverse("environment_unlock", args=["dev"]))
    assert AuditEvent.objects.get(action="environment.lock").details["via"] == "api"
    assert "via" not in AuditEvent.objects.get(action="environment.unlock").details
