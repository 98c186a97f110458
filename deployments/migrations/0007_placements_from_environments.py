"""One placement per application that has deployed to an environment, or, where none
has, per application. The placements inherit the environment's target settings, so an
existing install keeps deploying exactly where it did."""

from django.db import migrations


def create_placements(apps, schema_editor):
    Environment = apps.get_model("deployments", "Environment")
    Repository = apps.get_model("deployments", "Repository")
    Deployment = apps.get_model("deployments", "Deployment")
    Placement = apps.get_model("deployments", "Placement")
    all_repositories = list(Repository.objects.values_list("pk", flat=True))
    for environment in Environment.objects.all():
        deployed = set(
            Deployment.objects.filter(environment=environment).values_list("repository_id", flat=True)
        )
        for repository_id in sorted(deployed) or all_repositories:
            Placement.objects.get_or_create(repository_id=repository_id, environment=environment)


class Migration(migrations.Migration):
    dependencies = [("deployments", "0006_placement")]
    operations = [migrations.RunPython(create_placements, migrations.RunPython.noop)]
