"""manage.py shipmate export / apply: the configuration as YAML, round trip included."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command

from deployments.models import AuditEvent, Environment, FreezeWindow, Placement, Repository, Variable
from tests.conftest import place

pytestmark = pytest.mark.django_db


def export() -> str:
    out = io.StringIO()
    call_command("shipmate", "export", stdout=out)
    return out.getvalue()


def apply(path: Path, *extra: str) -> str:
    out = io.StringIO()
    call_command("shipmate", "apply", "-f", str(path), *extra, stdout=out)
    return out.getvalue()


@pytest.fixture
def configured(repository, make_environment):
    dev_env, live = make_environment("dev"), make_environment("live", order=30, approval=True)
    hello = Repository.objects.create(name="hello", git_url="/srv/hello.git", image_name="x/hello")
    place(
        hello,
        dev_env,
        target_settings={"port": 18099, "volumes": ["hello-data:/data"]},
        public_url="http://h/",
    )
    Placement.objects.filter(repository=repository, environment=live).update(smoke_url="http://127.0.0.1:9/")
    dev_env.variables.create(name="GREETING", plain_value="hi")
    Placement.objects.get(repository=hello, environment=dev_env).variables.create(
        name="GREETING", plain_value="hey"
    )
    secret = Variable(environment=live, name="API_TOKEN", is_secret=True)
    secret.set_value("tok-very-secret-123")
    secret.save()
    FreezeWindow.objects.create(
        environment=live, kind="weekly", reason="Friday", weekday=4, start_time="16:00", duration_minutes=60
    )


def wipe() -> None:
    Placement.objects.all().delete()
    Environment.objects.all().delete()
    Repository.objects.all().delete()


def test_export_apply_to_an_empty_database_and_export_again_are_identical(configured, tmp_path):
    first = export()
    assert "tok-very-secret-123" not in first
    (tmp_path / "config.yaml").write_text(first)
    wipe()

    out = apply(tmp_path / "config.yaml")

    assert "+ application hello" in out and "+ placement hello in dev" in out and "applied" in out
    assert Placement.objects.get(repository__name="hello").variables.get().plain_value == "hey"
    assert "! secret API_TOKEN in live has no value yet" in out
    assert export() == first
    assert AuditEvent.objects.filter(action="config.create").count() >= 6


def test_applying_the_same_file_again_changes_nothing(configured, tmp_path):
    (tmp_path / "config.yaml").write_text(export())
    before = AuditEvent.objects.count()
    assert apply(tmp_path / "config.yaml").strip() == "= nothing to change"
    assert AuditEvent.objects.count() == before


def test_dry_run_shows_the_diff_and_changes_nothing(configured, tmp_path):
    data = yaml.safe_load(export())
    data["environments"][0]["order"] = 5
    data["placements"][0]["enabled"] = False
    data["applications"].append({"name": "api", "git_url": "/srv/api.git", "image_name": "x/api"})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))
    before = export()

    out = apply(tmp_path / "config.yaml", "--dry-run")

    assert "+ application api" in out and "~ environment dev: order" in out and "enabled" in out
    assert "applied" not in out
    assert export() == before
    apply(tmp_path / "config.yaml")
    assert Environment.objects.get(name="dev").order == 5 and Repository.objects.filter(name="api").exists()


def test_a_secret_value_in_the_file_is_refused(configured, tmp_path):
    data = yaml.safe_load(export())
    live = next(e for e in data["environments"] if e["name"] == "live")
    live["variables"] = [{"name": "API_TOKEN", "secret": True, "value": "leaked"}]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(CommandError, match="secrets are set in Shipmate, never in a file"):
        apply(tmp_path / "config.yaml")


def test_a_clash_in_the_file_applies_nothing_and_names_the_other_placement(configured, tmp_path):
    data = yaml.safe_load(export())
    data["applications"].append({"name": "api", "git_url": "/srv/api.git", "image_name": "x/api"})
    data["placements"].append(
        {"application": "api", "environment": "dev", "target_settings": {"port": 18099}}
    )
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(CommandError, match="hello in dev already uses this port"):
        apply(tmp_path / "config.yaml")
    assert not Repository.objects.filter(name="api").exists()  # one transaction: nothing applied
