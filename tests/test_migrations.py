"""The placement migration, run from the schema before it with data in it."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def back_to_the_latest_schema():
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


BEFORE = [("deployments", "0005_dockerfile_commit")]
AFTER = [("deployments", "0007_placements_from_environments")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_each_environment_gets_a_placement_per_application_that_deployed_there_or_per_application():
    old = migrate(BEFORE)
    Repository = old.get_model("deployments", "Repository")
    Environment = old.get_model("deployments", "Environment")
    Deployment = old.get_model("deployments", "Deployment")
    Repository.objects.create(name="demo", git_url="/srv/demo", image_name="x/demo")
    api = Repository.objects.create(name="api", git_url="/srv/api", image_name="x/api")
    Environment.objects.create(name="dev", order=10, target_settings={"port": 8081})
    live = Environment.objects.create(name="live", order=30, target_settings={"port": 8083})
    Deployment.objects.create(repository=api, environment=live, ref="main", status="succeeded")

    new = migrate(AFTER)

    Placement = new.get_model("deployments", "Placement")
    placed = sorted(
        (p.environment.name, p.repository.name, p.target_settings, p.enabled)
        for p in Placement.objects.select_related("environment", "repository")
    )
    # live: only what deployed there; dev: nothing had, so every application. The
    # placements inherit the environment's target, so each keeps deploying where it did.
    assert placed == [("dev", "api", {}, True), ("dev", "demo", {}, True), ("live", "api", {}, True)]
