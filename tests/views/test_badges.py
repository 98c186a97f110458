"""Status badges: valid SVG with the right text, private unless an admin makes them
public (404 otherwise), escaped, cached briefly; switched in Manage with an audit event."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from deployments.models import AuditEvent, Deployment, Repository, Status

pytestmark = pytest.mark.django_db
SVG = "{http://www.w3.org/2000/svg}"


def badge_url(app: str = "demo", env: str = "live") -> str:
    return reverse("placement_badge", args=[app, env])


def texts(response) -> list[str]:
    root = ET.fromstring(response.content)
    assert root.tag == f"{SVG}svg"
    return [t.text or "" for t in root.iter(f"{SVG}text")]


def ship(repository, env, ref: str, status: str, minutes_ago: int) -> Deployment:
    at = timezone.now() - timedelta(minutes=minutes_ago)
    return Deployment.objects.create(
        repository=repository, environment=env, ref=ref, status=status, created_at=at, finished_at=at
    )


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def live(make_environment):
    return make_environment("live", order=30)


def test_badge_is_valid_svg_naming_environment_ref_and_status(dev, repository, live):
    ship(repository, live, "v1.4.1", Status.SUCCEEDED, 30)
    ship(repository, live, "v1.4.2", Status.SUCCEEDED, 20)
    ship(repository, live, "v1.5.0", Status.QUEUED, 10)  # waiting: not what the badge tells

    response = login(dev).get(badge_url())

    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml; charset=utf-8"
    assert response["Cache-Control"] == "private, max-age=60"
    assert texts(response) == ["live", "v1.4.2 · succeeded"]
    root = ET.fromstring(response.content)
    assert root.find(f"{SVG}title").text == "live: v1.4.2 · succeeded"
    assert 'fill="#1f8a4c"' in response.content.decode()


def test_badge_colour_follows_the_status(dev, repository, live):
    client = login(dev)
    assert texts(client.get(badge_url())) == ["live", "not deployed"]
    ship(repository, live, "v2", Status.ROLLED_BACK, 5)
    assert texts(client.get(badge_url()))[1] == "v2 · rolled back"
    ship(repository, live, "v3", Status.FAILED, 1)
    response = client.get(badge_url())
    assert texts(response)[1] == "v3 · failed" and 'fill="#c62f2f"' in response.content.decode()


def test_a_private_badge_is_404_to_anonymous_users_like_an_unknown_one(repository, live):
    ship(repository, live, "v1", Status.SUCCEEDED, 5)
    client = Client()

    assert client.get(badge_url()).status_code == 404
    assert client.get(badge_url("nosuchapp")).status_code == 404
    assert client.get(badge_url(env="nosuchenv")).status_code == 404


def test_a_private_badge_is_404_to_users_who_may_not_view_the_environment(outsider, dev, repository, live):
    live.deploy_groups.clear()
    live.approve_groups.clear()

    assert login(outsider).get(badge_url()).status_code == 404
    assert login(dev).get(badge_url()).status_code == 404


def test_a_public_badge_is_served_to_anyone_and_cached_publicly(repository, live):
    Repository.objects.filter(pk=repository.pk).update(public_badges=True)
    ship(repository, live, "v1", Status.SUCCEEDED, 5)

    response = Client().get(badge_url())

    assert response.status_code == 200
    assert response["Cache-Control"] == "public, max-age=60"
    assert "default-src 'none'" in response["Content-Security-Policy"]
    assert texts(response) == ["live", "v1 · succeeded"]


def test_badge_text_is_escaped(dev, repository, live):
    ship(repository, live, "a<b>&\"c'</text><script>x</script>", Status.SUCCEEDED, 5)

    response = login(dev).get(badge_url())

    body = response.content.decode()
    assert "<script>" not in body and "<b>" not in body
    message = texts(response)[1]  # parsed back by an XML parser: the exact ref, truncated
    assert message.startswith("a<b>&\"c'</text><script>") and message.endswith("… · succeeded")


def test_placement_page_shows_the_badge_url_and_markdown(dev, repository, live):
    html = login(dev).get(reverse("placement_detail", args=["demo", "live"])).content.decode()

    url = "http://testserver/badges/demo/live.svg"
    assert f"<code>{url}</code>" in html
    assert f"<code>![demo in live]({url})</code>" in html
    assert "Only people who may view live see it" in html


def test_admin_turns_public_badges_on_in_manage_and_it_is_audited(admin, repository, live):
    client = login(admin)
    form = client.get(reverse("manage_repository_edit", args=["demo"])).content.decode()
    assert 'name="public_badges"' in form
    data = {
        "git_url": repository.git_url, "default_branch": "main", "dockerfile_path": "Dockerfile",
        "build_context": ".", "test_command": repository.test_command, "image_name": repository.image_name,
        "public_badges": "on",
    }  # fmt: skip

    response = client.post(reverse("manage_repository_edit", args=["demo"]), data)

    assert response.status_code == 302
    repository.refresh_from_db()
    assert repository.public_badges
    event = AuditEvent.objects.filter(action="repository.update").latest("id")
    assert "public_badges" in str(event.details)
    assert Client().get(badge_url()).status_code == 200

    del data["public_badges"]  # an unticked box is not sent
    client.post(reverse("manage_repository_edit", args=["demo"]), data)
    assert Client().get(badge_url()).status_code == 404


def test_the_django_admin_edits_public_badges(repository):
    client = login(User.objects.create_superuser("root", "root@example.test", "root-pw"))

    html = client.get(reverse("admin:deployments_repository_change", args=[repository.pk])).content.decode()

    assert 'name="public_badges"' in html
