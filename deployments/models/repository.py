import hashlib
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

slug_validator = RegexValidator(r"^[a-z0-9][a-z0-9-]{0,39}$", "Use lower-case letters, digits and dashes.")


def validate_git_url(value: str) -> None:
    """The worker's own check (git.validate_url) with the worker's settings: the allowed
    protocols and the outbound policy (for IP-literal hosts; DNS names are checked again
    when the worker connects). Field validators run in the Manage forms, the Django
    admin and the YAML apply alike (full_clean)."""
    from ..pipeline import outbound
    from ..pipeline.git import GitError, validate_url

    try:
        validate_url(value, settings.GIT_ALLOWED_PROTOCOLS, policy=outbound.current_policy())
    except GitError as exc:
        raise ValidationError(str(exc)) from exc


def validate_git_ref(value: str) -> None:
    from ..pipeline.git import GitError, validate_ref

    try:
        validate_ref(value)
    except GitError as exc:
        raise ValidationError(str(exc)) from exc


def validate_relative_path(value: str) -> None:
    # The same rule as for paths in a repository's shipmate.yaml.
    from ..pipeline.pipeline_file import relative_path_problem

    if problem := relative_path_problem(value):
        raise ValidationError(f"This {problem}.")


# What an admin sets on an application besides its name: the Manage form and the YAML
# configuration (services/config.py) both use this list.
APPLICATION_FIELDS = (
    "git_url",
    "default_branch",
    "dockerfile_path",
    "build_context",
    "test_command",
    "image_name",
    "dockerfile_repo_url",
    "dockerfile_repo_ref",
)


class Repository(models.Model):
    name = models.CharField(max_length=40, unique=True, validators=[slug_validator])
    git_url = models.CharField(max_length=500, validators=[validate_git_url])
    default_branch = models.CharField(max_length=200, default="main")
    dockerfile_path = models.CharField(
        max_length=300, default="Dockerfile", validators=[validate_relative_path]
    )
    build_context = models.CharField(max_length=300, default=".", validators=[validate_relative_path])
    test_command = models.CharField(
        max_length=500, blank=True, help_text="Run inside the built image; empty skips the test stage."
    )
    image_name = models.CharField(
        max_length=200, help_text="Repository path in the registry, e.g. shipmate/demo."
    )
    # The seed article keeps image definitions apart from the code: when set, the
    # Dockerfile comes from this repository and the context from the app repository.
    dockerfile_repo_url = models.CharField(max_length=500, blank=True, validators=[validate_git_url])
    dockerfile_repo_ref = models.CharField(max_length=200, blank=True, default="")
    # Off: a badge is a 404 to anyone who may not view the environment, so names do not leak.
    public_badges = models.BooleanField(
        default=False, help_text="Serve this application's status badges to anyone, logged in or not."
    )

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "repositories"

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        # The refs the worker will resolve, refused as the worker would (git.validate_ref).
        errors: dict[str, ValidationError] = {}
        for name in ("default_branch", "dockerfile_repo_ref"):
            value = getattr(self, name)
            if value:
                try:
                    validate_git_ref(value)
                except ValidationError as exc:
                    errors[name] = exc
        if errors:
            raise ValidationError(errors)

    @property
    def build_key(self) -> str:
        """Changes when anything but the commit would change the image or its tests."""
        parts = [self.dockerfile_path, self.build_context, self.test_command, self.image_name]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()

    @property
    def history_dir(self) -> Path:
        """A blobless clone kept for commit lists and ancestry checks."""
        return Path(settings.WORK_DIR) / "history" / f"repository-{self.pk}"
