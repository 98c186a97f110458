"""Pages, htmx fragments, permissions and CSRF through the real views."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from deployments import services
from deployments.models import AuditEvent, Deployment, Status

pytestmark = pytest.mark.django_db


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_anonymous_user_is_sent_to_login(client):
    response = client.get(reverse("dashboard"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_dashboard_shows_what_each_environment_runs(dev, repository, dev_env):
    done = Deployment.objects.create(
        repository=repository,
        environment=dev_env,
        ref="main",
        commit_sha="a" * 40,
        image_digest="r/x@sha256:" + "b" * 64,
        requested_by=dev,
        status=Status.SUCCEEDED,
    )
    done.finished_at = done.created_at
    done.save()
    page = login(dev).get(reverse("dashboard"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "aaaaaaaaaa" in html and "sha256:bbbbbbb" in html and ">dev<" in html
    fragment = login(dev).get(reverse("dashboard"), HTTP_HX_REQUEST="true").content.decode()
    assert fragment.lstrip().startswith('<div id="environments"')
    assert "<html" not in fragment


def test_deploy_form_queues_a_deployment_and_redirects_to_it(
    dev, repository, dev_env, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        response = login(dev).post(
            reverse("deploy"), {"repository": repository.pk, "environment": dev_env.pk, "ref": "main"}
        )
    deployment = Deployment.objects.get()
    assert response.status_code == 302 and response.url == reverse("deployment_detail", args=[deployment.pk])
    assert deployment.status == Status.QUEUED and deployment.requested_by == dev
    assert AuditEvent.objects.filter(action="deployment.click", object_id=str(deployment.pk)).exists()


@pytest.mark.parametrize("ref", ["--upload-pack=evil", "-x", "a..b", "bad ref"])
def test_deploy_form_refuses_bad_refs_with_a_message(dev, repository, dev_env, ref):
    response = login(dev).post(
        reverse("deploy"), {"repository": repository.pk, "environment": dev_env.pk, "ref": ref}
    )
    assert response.status_code == 400
    assert 'role="alert"' in response.content.decode()
    assert not Deployment.objects.exists()


def test_user_without_role_cannot_deploy_or_see_deployments(outsider, dev, repository, dev_env):
    deployment = Deployment.objects.create(
        repository=repository, environment=dev_env, ref="main", requested_by=dev
    )
    client = login(outsider)
    response = client.post(
        reverse("deploy"), {"repository": repository.pk, "environment": dev_env.pk, "ref": "main"}
    )
    assert response.status_code == 400 and Deployment.objects.count() == 1
    assert client.get(reverse("deployment_detail", args=[deployment.pk])).status_code == 403
    assert client.get(reverse("deployment_log", args=[deployment.pk])).status_code == 403


def test_state_changes_need_csrf_and_post(dev, repository, dev_env):
    deployment = Deployment.objects.create(
        repository=repository, environment=dev_env, ref="main", requested_by=dev
    )
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(dev)
    assert strict.post(reverse("deployment_cancel", args=[deployment.pk])).status_code == 403
    assert strict.get(reverse("deployment_cancel", args=[deployment.pk])).status_code == 405
    deployment.refresh_from_db()
    assert deployment.status == Status.QUEUED


def test_developer_cancels_own_queued_deployment(dev, repository, dev_env):
    deployment = Deployment.objects.create(
        repository=repository, environment=dev_env, ref="main", requested_by=dev
    )
    response = login(dev).post(reverse("deployment_cancel", args=[deployment.pk]))
    assert response.status_code == 302
    deployment.refresh_from_db()
    assert deployment.status == Status.CANCELLED
    assert AuditEvent.objects.filter(action="deployment.cancel", actor=dev).exists()


def test_other_developer_cannot_cancel_someone_elses_deployment(dev, dev2, repository, dev_env):
    deployment = Deployment.objects.create(
        repository=repository, environment=dev_env, ref="main", requested_by=dev
    )
    login(dev2).post(reverse("deployment_cancel", args=[deployment.pk]))
    deployment.refresh_from_db()
    assert deployment.status == Status.QUEUED


def test_deployment_page_and_summary_fragment(dev, repository, dev_env):
    deployment = services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main")
    client = login(dev)
    page = client.get(reverse("deployment_detail", args=[deployment.pk])).content.decode()
    assert "sse-connect" in page and 'id="stage-checkout"' in page and 'id="log"' in page
    fragment = client.get(
        reverse("deployment_detail", args=[deployment.pk]), HTTP_HX_REQUEST="true"
    ).content.decode()
    assert fragment.lstrip().startswith('<section id="summary"') and 'id="log"' not in fragment


def test_history_filters_by_repository_and_environment(dev, repository, make_environment):
    dev_env, stage_env = make_environment("dev"), make_environment("stage", order=20)
    a = Deployment.objects.create(repository=repository, environment=dev_env, ref="a-ref", requested_by=dev)
    b = Deployment.objects.create(repository=repository, environment=stage_env, ref="b-ref", requested_by=dev)
    client = login(dev)
    html = client.get(reverse("history"), {"environment": "stage"}).content.decode()
    assert f"#{b.pk}<" in html and f"#{a.pk}<" not in html
    html = client.get(
        reverse("history"), {"repository": "demo", "environment": "dev"}, HTTP_HX_REQUEST="true"
    ).content.decode()
    assert f"#{a.pk}<" in html and f"#{b.pk}<" not in html and "<html" not in html


def test_history_pages_through_older_deployments_with_no_gap_or_repeat(dev, repository, dev_env):
    import re

    same_instant = timezone.now()  # ties on created_at are ordered by id
    made = [
        Deployment.objects.create(
            repository=repository, environment=dev_env, ref="main", requested_by=dev,
            created_at=same_instant if i % 3 else same_instant - timedelta(seconds=i),
        ).pk
        for i in range(120)
    ]  # fmt: skip
    client = login(dev)
    seen: list[int] = []
    url = reverse("history") + "?environment=dev"
    for _ in range(5):
        html = client.get(url).content.decode()
        rows = [int(pk) for pk in re.findall(r'<td><a href="/deployments/(\d+)/">', html)]
        assert len(rows) <= 50
        seen += rows
        older = re.search(r'id="older" href="([^"]+)"', html)
        if older is None:
            break
        url = reverse("history") + older[1].replace("&amp;", "&")
    assert sorted(seen) == sorted(made) and len(seen) == len(set(seen))
    expected = list(
        Deployment.objects.filter(pk__in=made).order_by("-created_at", "-id").values_list("pk", flat=True)
    )
    assert seen == expected


def test_history_shows_each_rows_duration_and_approvers_in_a_constant_number_of_queries(
    dev, release, repository, make_environment, django_assert_max_num_queries
):
    from datetime import timedelta

    from deployments.models import Approval

    env = make_environment("live", order=30, approval=True)
    started = timezone.now() - timedelta(minutes=5)
    shipped = Deployment.objects.create(
        repository=repository,
        environment=env,
        ref="main",
        requested_by=dev,
        status=Status.SUCCEEDED,
        started_at=started,
        finished_at=started + timedelta(seconds=83),
    )
    Approval.objects.create(
        deployment=shipped, approver=release, decision=Approval.Decision.APPROVED, expires_at=timezone.now()
    )
    client = login(dev)
    html = client.get(reverse("history")).content.decode()
    row = html[html.index(f"#{shipped.pk}<") :].split("</tr>")[0]
    assert '<td class="approvers">release</td>' in row
    assert '<td class="duration">1 min 23 s</td>' in row

    with django_assert_max_num_queries(100) as few:  # measured here; the bound is the next check
        client.get(reverse("history"))
    for _ in range(20):
        more = Deployment.objects.create(repository=repository, environment=env, ref="x", requested_by=dev)
        Approval.objects.create(
            deployment=more, approver=release, decision=Approval.Decision.APPROVED, expires_at=timezone.now()
        )
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get(reverse("history"))


def test_login_failure_is_audited_without_the_password(client, dev):
    client.post(reverse("login"), {"username": "dev", "password": "wrong-secret"})
    event = AuditEvent.objects.get(action="auth.login_failed")
    assert event.object_repr == "dev"
    assert "wrong-secret" not in str(event.details)


def test_deploying_older_code_asks_for_confirmation(dev, repository, dev_env, demo_repo_path):
    import subprocess

    head = subprocess.run(
        ["git", "-C", str(demo_repo_path), "rev-parse", "main"], capture_output=True, text=True
    ).stdout.strip()
    Deployment.objects.create(
        repository=repository,
        environment=dev_env,
        ref="main",
        commit_sha=head,
        image_digest="r/x@sha256:" + "b" * 64,
        requested_by=dev,
        status=Status.SUCCEEDED,
        finished_at=timezone.now(),
    )
    client = login(dev)
    form = {"repository": repository.pk, "environment": dev_env.pk, "ref": "v1.0"}
    response = client.post(reverse("deploy"), form)
    assert response.status_code == 409
    assert "older than what dev runs now" in response.content.decode()
    assert Deployment.objects.count() == 1
    response = client.post(reverse("deploy"), {**form, "confirm_older": "1"})
    assert response.status_code == 302 and Deployment.objects.count() == 2
    # Newer code needs no confirmation.
    response = client.post(reverse("deploy"), {**form, "ref": "main"})
    assert response.status_code == 302


def test_page_renders_the_tail_and_load_earlier_returns_the_lines_before_it(
    dev, repository, dev_env, settings
):
    from deployments.models import LogLine

    settings.LOG_PAGE_TAIL = 10
    deployment = Deployment.objects.create(
        repository=repository, environment=dev_env, ref="main", requested_by=dev, status=Status.SUCCEEDED
    )
    LogLine.objects.bulk_create(
        LogLine(deployment=deployment, entry_ms=1000 + i, entry_seq=0, stage="build", text=f"line {i:02d}")
        for i in range(25)
    )
    client = login(dev)
    page = client.get(reverse("deployment_detail", args=[deployment.pk])).content.decode()
    assert "line 24" in page and "line 15" in page and "line 14" not in page
    assert 'id="load-earlier"' in page
    earlier = client.get(
        reverse("deployment_log_earlier", args=[deployment.pk]), {"before": "1015-0"}, HTTP_HX_REQUEST="true"
    )
    html = earlier.content.decode()
    assert "line 05" in html and "line 14" in html and "line 04" not in html and "line 15" not in html
    assert "before=1005-0" in html  # the next "load earlier" continues from there


def test_deployment_page_lists_changed_variables_but_never_secret_values(dev, repository, dev_env):
    previous = Deployment.objects.create(
        repository=repository,
        environment=dev_env,
        ref="main",
        requested_by=dev,
        status=Status.SUCCEEDED,
        finished_at=timezone.now(),
        config_snapshot=dev_env.placements.get(repository=repository).config_snapshot(),
    )
    secret = dev_env.variables.create(name="API_KEY", is_secret=True)
    secret.set_value("sk-very-secret-value")
    secret.save()
    dev_env.variables.create(name="MODE", plain_value="fast")
    current = services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main")
    html = login(dev).get(reverse("deployment_detail", args=[current.pk])).content.decode()
    assert "API_KEY</code> added" in html and "MODE</code> added" in html
    assert "sk-very-secret-value" not in html
    assert f"#{previous.pk}" in html


def test_expired_approval_is_shown_as_unusable(dev, release, repository, live_env):
    from datetime import timedelta

    from deployments.models import Approval

    deployment = Deployment.objects.create(
        repository=repository,
        environment=live_env,
        ref="main",
        requested_by=dev,
        status=Status.AWAITING_APPROVAL,
        commit_sha="c" * 40,
        image_digest="r/x@sha256:" + "c" * 64,
    )
    Approval.objects.create(
        deployment=deployment,
        approver=release,
        decision="approved",
        commit_sha=deployment.commit_sha,
        image_digest=deployment.image_digest,
        config_hash=live_env.placements.get(repository=repository).config_hash(),
        expires_at=timezone.now() - timedelta(minutes=5),
    )
    html = login(dev).get(reverse("deployment_detail", args=[deployment.pk])).content.decode()
    assert "0 of 1 valid" in html
    assert "cannot be used" in html


def test_admin_tests_the_connection_from_the_environment_page(admin, dev_env):
    client = login(admin)
    page = client.get(reverse("environment_detail", args=[dev_env.name])).content.decode()
    assert "Test connection" in page
    response = client.post(reverse("manage_environment_test_connection", args=[dev_env.name]), follow=True)
    assert "Docker" in response.content.decode()


def test_environment_page_shows_the_queue_in_fifo_order(dev, dev2, repository, dev_env):
    running = Deployment.objects.create(
        repository=repository, environment=dev_env, ref="r", requested_by=dev, status=Status.RUNNING
    )
    first = Deployment.objects.create(repository=repository, environment=dev_env, ref="a", requested_by=dev2)
    second = Deployment.objects.create(repository=repository, environment=dev_env, ref="b", requested_by=dev)
    html = login(dev).get(reverse("environment_detail", args=[dev_env.name])).content.decode()
    assert f"#{running.pk}</a> r" in html
    assert html.index(f'id="queue-{first.pk}"') < html.index(f'id="queue-{second.pk}"')
    detail = login(dev).get(reverse("deployment_detail", args=[second.pk])).content.decode()
    assert "position 2 for dev" in detail


def test_too_long_approval_comment_is_refused_with_the_form_error(dev, release, repository, live_env):
    from deployments.models import Approval

    deployment = Deployment.objects.create(
        repository=repository,
        environment=live_env,
        ref="main",
        requested_by=dev,
        status=Status.AWAITING_APPROVAL,
        commit_sha="d" * 40,
        image_digest="r/x@sha256:" + "d" * 64,
    )
    response = login(release).post(
        reverse("deployment_approve", args=[deployment.pk]), {"comment": "x" * 2001}, follow=True
    )
    assert "at most 2000 characters" in response.content.decode()
    assert not Approval.objects.filter(deployment=deployment).exists()
    assert not AuditEvent.objects.filter(
        object_id=str(deployment.pk), action__startswith="deployment.appr"
    ).exists()
    deployment.refresh_from_db()
    assert deployment.status == Status.AWAITING_APPROVAL


def test_environment_page_lists_each_application_with_what_runs_builds_and_waits(
    dev, dev2, repository, dev_env, tmp_path
):
    from deployments.models import Phase, Repository
    from tests.conftest import place

    other = Repository.objects.create(name="other", git_url=repository.git_url, image_name="t/other")
    place(other, dev_env, target_settings={"port": 1}, public_url="http://127.0.0.1:1/")
    done = Deployment.objects.create(
        repository=other, environment=dev_env, ref="v1", requested_by=dev, status=Status.SUCCEEDED,
        commit_sha="c" * 40, image_digest="r/other@sha256:" + "d" * 64, finished_at=timezone.now(),
    )  # fmt: skip
    rolling = Deployment.objects.create(
        repository=repository, environment=dev_env, ref="r", requested_by=dev,
        status=Status.RUNNING, phase=Phase.RELEASE,
    )  # fmt: skip
    ahead = Deployment.objects.create(
        repository=repository, environment=dev_env, ref="a", requested_by=dev2,
        status=Status.RUNNING, phase=Phase.BUILD,
    )  # fmt: skip
    ready = Deployment.objects.create(
        repository=repository, environment=dev_env, ref="b", requested_by=dev, status=Status.READY
    )
    html = login(dev).get(reverse("environment_detail", args=[dev_env.name])).content.decode()
    demo_row = html[html.index('data-app="demo"') : html.index('data-app="other"')]
    other_row = html[html.index('data-app="other"') :]
    assert f"#{rolling.pk}</a> r" in demo_row and "rolling out" in demo_row
    assert f"#{ahead.pk}</a> a" in demo_row and "building ahead" in demo_row
    assert f'id="queue-{ready.pk}"' in demo_row
    assert f"#{done.pk}</a>" in other_row and "Open app" in other_row
    assert f"#{done.pk}</a>" not in demo_row


def test_finished_stages_show_how_long_they_took(dev, repository, dev_env):
    from datetime import timedelta

    from deployments.models import Stage

    deployment = Deployment.objects.create(
        repository=repository, environment=dev_env, ref="main", requested_by=dev, status=Status.SUCCEEDED
    )
    start = timezone.now()
    Stage.objects.create(
        deployment=deployment,
        name="build",
        position=1,
        status="succeeded",
        started_at=start,
        finished_at=start + timedelta(seconds=2.5),
    )
    html = login(dev).get(reverse("deployment_detail", args=[deployment.pk])).content.decode()
    assert '<span class="stage-time">2.5 s</span>' in html


def test_the_nav_count_of_approvals_is_what_the_inbox_lists_for_every_user(
    dev, dev2, release, release2, admin, outsider, groups, repository, make_environment
):
    from deployments import permissions
    from deployments.selectors import approval_inbox, approval_inbox_count

    live = make_environment("live", order=30, approval=True)
    mine_ok = make_environment("mine-ok", order=40, approval=True)
    mine_ok.allow_self_approval = True
    mine_ok.save()
    admins_only = make_environment("admins-only", order=50, approval=True)
    admins_only.approve_groups.set([groups[permissions.ADMINS]])
    for env in (live, mine_ok, admins_only):
        for who in (dev, release, admin):
            Deployment.objects.create(
                repository=repository, environment=env, ref="main", requested_by=who,
                status=Status.AWAITING_APPROVAL,
            )  # fmt: skip
    Deployment.objects.create(repository=repository, environment=live, ref="main", requested_by=dev)  # queued
    counts = {u.username: approval_inbox_count(u) for u in (dev, dev2, release, release2, admin, outsider)}
    listed = {u.username: len(approval_inbox(u)) for u in (dev, dev2, release, release2, admin, outsider)}
    assert counts == listed
    assert counts["admin"] == 7  # all nine but its own two where self-approval is off
    assert counts["outsider"] == 0


def _awaiting(repository, environment, requester) -> Deployment:
    return Deployment.objects.create(
        repository=repository,
        environment=environment,
        ref="main",
        requested_by=requester,
        status=Status.AWAITING_APPROVAL,
        commit_sha="d" * 40,
        image_digest="r/x@sha256:" + "d" * 64,
    )


def test_the_requester_of_a_pending_approval_is_told_who_can_approve_and_where(
    dev, release, repository, live_env
):
    deployment = _awaiting(repository, live_env, dev)
    url = reverse("deployment_detail", args=[deployment.pk])
    html = login(dev).get(url).content.decode()
    assert 'id="waiting-on"' in html
    assert "a member of <strong>Admins</strong> or a member of <strong>Release managers</strong>" in html
    assert f'<a href="{reverse("approvals")}">Approvals inbox</a>' in html
    assert "Approve</button>" not in html
    # Not a release manager's own: the own-deployment rule is not what holds this user back.
    assert "you cannot approve your own" not in html
    # An approver sees the buttons instead of the note.
    html = login(release).get(url).content.decode()
    assert 'id="waiting-on"' not in html and "Approve</button>" in html


def test_a_release_manager_is_told_they_cannot_approve_their_own(release, repository, live_env):
    deployment = _awaiting(repository, live_env, release)
    html = login(release).get(reverse("deployment_detail", args=[deployment.pk])).content.decode()
    assert "you cannot approve your own deployment." in html
    assert "Approve</button>" not in html
