"""The applications × environments dashboard and the placement page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from deployments.models import Deployment, Placement, Repository, Status, Trigger
from tests.conftest import place

pytestmark = pytest.mark.django_db


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def shipped(repository, environment, user, sha: str, *, ago: int = 10, **fields) -> Deployment:
    finished = timezone.now() - timedelta(minutes=ago)
    return Deployment.objects.create(
        repository=repository,
        environment=environment,
        ref=fields.pop("ref", "main"),
        commit_sha=sha * 40,
        image_digest=f"r/{repository.name}@sha256:" + sha * 64,
        requested_by=user,
        status=Status.SUCCEEDED,
        created_at=finished - timedelta(minutes=1),
        finished_at=finished,
        **fields,
    )


def cell(html: str, key: str) -> str:
    start = html.index(f'data-cell="{key}"')
    return html[start : html.index("</td>", start)]


def test_each_cell_shows_version_author_queue_link_and_a_behind_marker(dev, repository, make_environment):
    dev_env, stage, live = (
        make_environment("dev"),
        make_environment("stage", order=20),
        make_environment("live", order=30),
    )
    hello = Repository.objects.create(name="hello", git_url="/srv/hello", image_name="x/hello")
    place(hello, dev_env, target_settings={"port": 1}, public_url="http://127.0.0.1:9001/")
    Placement.objects.filter(repository=repository, environment=dev_env).update(
        public_url="http://127.0.0.1:9000/"
    )
    shipped(repository, stage, dev, "a", ago=30)  # older code in stage…
    shipped(repository, dev_env, dev, "b", ago=5, ref="feature")  # …than in dev
    Deployment.objects.create(repository=repository, environment=dev_env, ref="next", requested_by=dev)
    live.locked_reason, live.locked_by = "release freeze", dev
    live.locked_at = timezone.now()
    live.save()

    html = login(dev).get(reverse("dashboard")).content.decode()

    demo_dev = cell(html, "demo/dev")
    assert "<code>feature</code>" in demo_dev and "bbbbbbbbbb" in demo_dev and "dev," in demo_dev
    assert 'href="http://127.0.0.1:9000/"' in demo_dev and "1 queued" in demo_dev
    assert reverse("placement_detail", args=["demo", "dev"]) in demo_dev
    assert "behind dev" in cell(html, "demo/stage")
    assert "behind" not in demo_dev
    assert "nothing yet" in cell(html, "hello/dev")
    assert 'href="http://127.0.0.1:9001/"' in cell(html, "hello/dev")
    assert 'data-cell="hello/stage"' not in html  # not placed there
    assert (
        html.index('<th data-env="dev"')
        < html.index('<th data-env="stage"')
        < html.index('<th data-env="live"')
    )
    live_header = html[
        html.index('<th data-env="live"') : html.index("</th>", html.index('<th data-env="live"'))
    ]
    assert "locked" in live_header


def test_the_matrix_needs_the_same_queries_for_50_applications_in_10_environments(
    dev, make_environment, django_assert_max_num_queries
):
    envs = [make_environment(f"env{i}", order=i) for i in range(10)]
    client = login(dev)

    def grow(count: int) -> None:
        for n in range(Repository.objects.count(), count):
            repo = Repository.objects.create(name=f"app{n}", git_url=f"/srv/app{n}", image_name=f"x/app{n}")
            for env in envs:
                Placement.objects.create(
                    repository=repo, environment=env, target_settings={"port": 10000 + n}
                )
                shipped(repo, env, dev, "c", ago=n + 1)

    grow(2)
    with django_assert_max_num_queries(100) as small:
        client.get(reverse("dashboard"))
    grow(50)
    with django_assert_max_num_queries(len(small.captured_queries)):
        page = client.get(reverse("dashboard"))
    assert page.content.decode().count('data-cell="') == 500


def test_the_placement_page_names_what_a_rollback_and_a_promotion_would_ship(
    dev, repository, make_environment
):
    dev_env, stage = make_environment("dev"), make_environment("stage", order=20)
    shipped(repository, stage, dev, "1", ago=60)
    now = shipped(repository, stage, dev, "2", ago=30)
    in_dev = shipped(repository, dev_env, dev, "3", ago=10)

    html = login(dev).get(reverse("placement_detail", args=["demo", "stage"])).content.decode()

    rollback = html[html.index('id="rollback"') : html.index("</details>", html.index('id="rollback"'))]
    assert "1" * 40 in rollback and "sha256:" + "1" * 64 in rollback
    promote = html[html.index('id="promote"') : html.index("</details>", html.index('id="promote"'))]
    assert in_dev.commit_sha in promote and in_dev.image_digest in promote
    assert f"#{now.pk}" in html  # in the history


def test_a_promotion_confirmed_for_another_digest_is_refused(dev, repository, make_environment):
    dev_env, stage = make_environment("dev"), make_environment("stage", order=20)
    shipped(repository, dev_env, dev, "4")
    client = login(dev)

    response = client.post(
        reverse("environment_promote", args=["stage"]),
        {"source": "dev", "repository": "demo", "expected_digest": "r/demo@sha256:" + "9" * 64},
        follow=True,
    )

    assert "What would ship changed since you confirmed" in response.content.decode()
    assert not Deployment.objects.filter(environment=stage, trigger=Trigger.PROMOTION).exists()
    client.post(
        reverse("environment_promote", args=["stage"]),
        {"source": "dev", "repository": "demo", "expected_digest": "r/demo@sha256:" + "4" * 64},
    )
    assert Deployment.objects.get(environment=stage, trigger=Trigger.PROMOTION).commit_sha == "4" * 40


def test_the_deploy_form_offers_the_placed_environments_of_each_application(
    dev, repository, make_environment
):
    dev_env, stage = make_environment("dev"), make_environment("stage", order=20)
    Placement.objects.filter(repository=repository, environment=stage).delete()
    unplaced = Repository.objects.create(name="nowhere", git_url="/srv/n", image_name="x/n")
    Placement.objects.filter(repository=unplaced).delete()

    html = login(dev).get(reverse("deploy")).content.decode()

    placed = html[html.index('id="placed-in"') :]
    assert f'"{repository.pk}": [{dev_env.pk}]' in placed
    assert ">nowhere<" not in html
    response = login(dev).post(
        reverse("deploy"), {"repository": repository.pk, "environment": stage.pk, "ref": "main"}
    )
    assert response.status_code == 400 and "demo is not placed in stage" in response.content.decode()
