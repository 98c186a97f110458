"""Forms of the Manage pages. They check the shape of the input; the services in
`services/manage.py` own the rules and report broken ones as field errors too."""

from __future__ import annotations

from typing import Any

import yaml
from django import forms
from django.contrib.auth.models import Group
from django.core.validators import MaxValueValidator, RegexValidator, URLValidator

from . import permissions
from .models import Environment, FreezeWindow, Placement, Repository, TargetKind
from .models.repository import slug_validator, validate_git_url, validate_relative_path
from .services.manage import ENVIRONMENT_FIELDS, TARGET_KEYS, VARIABLE_NAME_RE

# shipmate.css styles every input as a full-width block; a checkbox reads better inline.
INLINE = {"style": "display:inline-block;width:auto;margin-right:6px"}
CHECKBOX = forms.CheckboxInput(attrs=INLINE)
WEEKDAYS = [
    (0, "Monday"),
    (1, "Tuesday"),
    (2, "Wednesday"),
    (3, "Thursday"),
    (4, "Friday"),
    (5, "Saturday"),
    (6, "Sunday"),
]


class WriteOnlyTextarea(forms.Textarea):
    """Never renders a value, not even the one just submitted: what goes in here is secret."""

    def format_value(self, value: Any) -> None:
        return None


class RepositoryForm(forms.Form):
    name = forms.CharField(max_length=40, validators=[slug_validator])
    git_url = forms.CharField(max_length=500, validators=[validate_git_url], label="Git URL")
    default_branch = forms.CharField(max_length=200, initial="main")
    dockerfile_path = forms.CharField(
        max_length=300, initial="Dockerfile", validators=[validate_relative_path]
    )
    build_context = forms.CharField(max_length=300, initial=".", validators=[validate_relative_path])
    test_command = forms.CharField(
        max_length=500, required=False, help_text="Runs inside the built image; empty skips the test stage."
    )
    image_name = forms.CharField(
        max_length=200, help_text="Repository path in the registry, e.g. shipmate/demo."
    )
    dockerfile_repo_url = forms.CharField(
        max_length=500,
        required=False,
        validators=[validate_git_url],
        label="Dockerfile repository URL",
        help_text="Optional: take the Dockerfile from this repository instead.",
    )
    dockerfile_repo_ref = forms.CharField(max_length=200, required=False, label="Dockerfile repository ref")

    def __init__(self, *args: Any, instance: Repository | None = None, **kwargs: Any) -> None:
        if instance is not None:
            kwargs.setdefault("initial", {f: getattr(instance, f) for f in self.base_fields})
        super().__init__(*args, **kwargs)
        if instance is not None:
            # Fixed once created: container names are derived from it.
            self.fields["name"].disabled = True


def _docker_host(value: str) -> None:
    if value and not value.startswith(("unix://", "tcp://", "ssh://", "http://", "https://", "npipe://")):
        raise forms.ValidationError("Use unix://, tcp:// or ssh:// (empty: the worker's DOCKER_HOST).")


class EnvironmentForm(forms.Form):
    name = forms.CharField(max_length=40, validators=[slug_validator])
    order = forms.IntegerField(min_value=0, initial=0, help_text="dev < stage < live")
    target_kind = forms.ChoiceField(choices=TargetKind.choices, initial=TargetKind.DOCKER)
    smoke_url = forms.CharField(
        max_length=500,
        required=False,
        validators=[URLValidator(schemes=["http", "https"])],
        label="Smoke URL",
        help_text="Optional URL checked after the rollout.",
    )
    # Docker target.
    docker_host = forms.CharField(
        max_length=300,
        required=False,
        validators=[_docker_host],
        help_text="Empty: the worker's DOCKER_HOST.",
    )
    port = forms.IntegerField(
        required=False, min_value=1, max_value=65535, help_text="Host port the app listens on."
    )
    container_port = forms.IntegerField(
        required=False, min_value=1, max_value=65535, help_text="Empty: same as the port."
    )
    network_mode = forms.CharField(
        max_length=100, required=False, help_text="host, bridge or a network name."
    )
    bind_host = forms.GenericIPAddressField(required=False, help_text="Empty: 127.0.0.1.")
    health_path = forms.CharField(max_length=300, required=False, help_text="Empty: /healthz.")
    health_timeout = forms.FloatField(required=False, min_value=0.1, help_text="Seconds.")
    # Kubernetes target.
    namespace = forms.CharField(max_length=253, required=False)
    deployment = forms.CharField(max_length=253, required=False)
    container = forms.CharField(max_length=253, required=False)
    context = forms.CharField(max_length=253, required=False, help_text="kubeconfig context; empty: current.")
    kubeconfig_path = forms.CharField(max_length=500, required=False, help_text="A file on the worker.")
    in_cluster = forms.BooleanField(required=False, widget=CHECKBOX, label="Use the worker's service account")
    timeout = forms.FloatField(required=False, min_value=1, help_text="Rollout timeout in seconds.")
    max_restarts = forms.IntegerField(required=False, min_value=0)
    kubeconfig = forms.CharField(
        required=False,
        widget=WriteOnlyTextarea(attrs={"rows": 4, "autocomplete": "off"}),
        help_text="Write-only: leave blank to keep the stored one.",
    )
    clear_kubeconfig = forms.BooleanField(
        required=False, widget=CHECKBOX, label="Remove the stored kubeconfig"
    )
    # Policy.
    deploy_groups = forms.ModelMultipleChoiceField(
        queryset=Group.objects.order_by("name"),
        required=False,
        widget=forms.CheckboxSelectMultiple(attrs=INLINE),
    )
    approve_groups = forms.ModelMultipleChoiceField(
        queryset=Group.objects.order_by("name"),
        required=False,
        widget=forms.CheckboxSelectMultiple(attrs=INLINE),
    )
    requires_approval = forms.BooleanField(required=False, widget=CHECKBOX)
    approvals_required = forms.IntegerField(min_value=1, max_value=20, initial=1)
    allow_self_approval = forms.BooleanField(required=False, widget=CHECKBOX)
    approval_ttl_minutes = forms.IntegerField(
        min_value=1, initial=240, validators=[MaxValueValidator(525600)], label="Approval lifetime (minutes)"
    )

    def __init__(self, *args: Any, instance: Environment | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("initial", self._initial(instance))
        super().__init__(*args, **kwargs)
        if instance is not None:
            self.fields["name"].disabled = True

    @staticmethod
    def _initial(env: Environment | None) -> dict[str, Any]:
        if env is None:
            return {
                "deploy_groups": Group.objects.filter(name__in=permissions.ROLE_GROUPS),
                "approve_groups": Group.objects.filter(
                    name__in=[permissions.RELEASE_MANAGERS, permissions.ADMINS]
                ),
            }
        initial: dict[str, Any] = {f: getattr(env, f) for f in ENVIRONMENT_FIELDS}
        initial["deploy_groups"] = env.deploy_groups.all()
        initial["approve_groups"] = env.approve_groups.all()
        for keys in TARGET_KEYS.values():
            initial.update({k: env.target_settings[k] for k in keys if k in env.target_settings})
        return initial  # the kubeconfig is never part of it

    def clean_kubeconfig(self) -> str:
        text = self.cleaned_data["kubeconfig"].strip()
        if not text:
            return ""
        try:
            parsed = yaml.safe_load(text)
        except yaml.YAMLError:
            parsed = None
        if not isinstance(parsed, dict):
            # Say nothing about the content: it may hold credentials.
            raise forms.ValidationError("This is not a kubeconfig (expected a YAML mapping).")
        return text


class VariableForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        validators=[
            RegexValidator(
                VARIABLE_NAME_RE, "Use letters, digits and underscores, not starting with a digit."
            )
        ],
    )
    value = forms.CharField(
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="For a secret, leave blank to keep the stored value.",
    )
    is_secret = forms.BooleanField(
        required=False, widget=CHECKBOX, label="Secret (encrypted, never shown again)"
    )

    def full_clean(self) -> None:
        super().full_clean()
        if self.is_bound and (self.cleaned_data.get("is_secret") or self.data.get("is_secret")):
            # If the page comes back with an error, it must not echo the secret.
            self.data = self.data.copy()
            self.data["value"] = ""


class FreezeWindowForm(forms.Form):
    kind = forms.ChoiceField(choices=FreezeWindow.Kind.choices, initial=FreezeWindow.Kind.ONCE)
    reason = forms.CharField(max_length=200)
    starts_at = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}), label="Starts (one-off)"
    )
    ends_at = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}), label="Ends (one-off)"
    )
    weekday = forms.TypedChoiceField(
        choices=[("", "—"), *WEEKDAYS], coerce=int, empty_value=None, required=False, label="Day (weekly)"
    )
    start_time = forms.TimeField(
        required=False, widget=forms.TimeInput(attrs={"type": "time"}), label="At (weekly)"
    )
    duration_minutes = forms.IntegerField(required=False, min_value=1, label="Minutes (weekly)")


class UserRolesForm(forms.Form):
    groups = forms.MultipleChoiceField(
        choices=[(g, g) for g in permissions.ROLE_GROUPS],
        required=False,
        widget=forms.CheckboxSelectMultiple(attrs=INLINE),
    )


class PlacementForm(forms.ModelForm):
    """An application in an environment. Placement.clean() refuses a target another placement uses."""

    class Meta:
        model = Placement
        fields = ["repository", "environment", "target_settings", "smoke_url", "public_url", "enabled"]
        labels = {"repository": "Application"}
        help_texts = {
            "target_settings": 'JSON over the environment\'s settings: docker {"port": 8082, "container_port": 80, '
            '"health_path": "/healthz"}; kubernetes {"namespace": "shop", "deployment": "web", "container": "app"}.'
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:  # the pair is what the placement is; move it by making another
            self.fields["repository"].disabled = self.fields["environment"].disabled = True
