"""Forms of the Manage pages: ModelForms, so the models' validators and clean() (which
the Django admin runs too) hold the rules. Fields that are not model fields are only
the write-only kubeconfig, a variable's value and one input per target setting, built
from the target kind's settings dataclass."""

from __future__ import annotations

from typing import Any

import yaml
from django import forms
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.utils import timezone

from . import permissions
from .models import Environment, FreezeWindow, Placement, Repository
from .models.environment import VARIABLE_NAME_RE
from .models.repository import APPLICATION_FIELDS
from .pipeline.targets.settings import KINDS, SettingInfo

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
KIND_TITLES = {"docker": "Docker target", "kubernetes": "Kubernetes target"}


class WriteOnlyTextarea(forms.Textarea):
    """Never renders a value, not even the one just submitted: what goes in here is secret."""

    def format_value(self, value: Any) -> None:
        return None


class LinesField(forms.CharField):
    """A list of strings, one per line (Docker volumes)."""

    widget = forms.Textarea(attrs={"rows": 2})

    def prepare_value(self, value: Any) -> Any:
        return "\n".join(value) if isinstance(value, list | tuple) else value

    def to_python(self, value: Any) -> list[str]:
        text = super().to_python(value)
        return [line.strip() for line in text.splitlines() if line.strip()]


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value))
    return "" if value is None else str(value)


def setting_field(info: SettingInfo, inherited: Any) -> forms.Field:
    """One optional input for one setting. Empty means "inherit": the environment's value
    (a placement's form) or the setting's default, shown as the placeholder."""
    fallback = _shown(inherited if inherited not in (None, "", [], ()) else info.default)
    options: dict[str, Any] = {"required": False, "help_text": info.help, "label": info.label or None}
    if info.type is bool:
        return forms.TypedChoiceField(
            choices=[("", f"Inherit ({fallback or 'no'})"), ("true", "Yes"), ("false", "No")],
            coerce=lambda value: value == "true",
            empty_value=None,
            **options,
        )
    field: forms.Field
    if info.type is int:
        field = forms.IntegerField(**options)
    elif info.type is float:
        field = forms.FloatField(**options)
    elif info.type is list:
        field = LinesField(**options)
    else:
        field = forms.CharField(max_length=500, **options)
    if fallback:
        field.widget.attrs["placeholder"] = fallback
    return field


class TargetSettingsForm(forms.ModelForm):
    """A ModelForm whose instance has a `target_settings` JSON field, edited as one input
    per setting of a target kind. The model's clean() parses the result, and its errors
    (keyed `target_settings`) are shown next to the setting they name."""

    def add_setting_fields(self, kinds: list[str], inherited: dict[str, Any]) -> None:
        self.setting_kinds = kinds
        stored = self.instance.target_settings or {}
        for kind in kinds:
            for info in KINDS[kind].describe():
                self.fields[info.name] = setting_field(info, inherited.get(info.name))
                if info.name in stored:
                    value = stored[info.name]
                    if info.type is bool:
                        value = "true" if value else "false"  # the choice values
                    self.initial.setdefault(info.name, value)

    @property
    def setting_sections(self) -> list[tuple[str, str, list[forms.BoundField]]]:
        """(kind, title, inputs) per target kind shown, for the template."""
        return [
            (kind, KIND_TITLES[kind], [self[info.name] for info in KINDS[kind].describe()])
            for kind in self.setting_kinds
        ]

    def collect_settings(self, kind: str) -> None:
        """Put the given settings of `kind` into the instance; keys no form knows (set
        through the Django admin, say) survive an edit."""
        known = {info.name for cls in KINDS.values() for info in cls.describe()}
        stored = self.instance.target_settings or {}
        merged = {k: v for k, v in stored.items() if k not in known}
        for info in KINDS[kind].describe() if kind in KINDS else []:
            value = self.cleaned_data.get(info.name)
            if value not in (None, "", []):
                merged[info.name] = value
        self.instance.target_settings = merged

    def add_error(self, field: str | None, error: Any) -> None:
        if field is None and isinstance(error, ValidationError) and hasattr(error, "error_dict"):
            error_dict = dict(error.error_dict)
            for item in error_dict.pop("target_settings", []):
                name = getattr(item, "setting", None)
                super().add_error(name if name in self.fields else None, item)
            if not error_dict:
                return
            error = ValidationError(error_dict)
        super().add_error(field, error)


class RepositoryForm(forms.ModelForm):
    class Meta:
        model = Repository
        fields = ["name", *APPLICATION_FIELDS, "public_badges"]
        widgets = {"public_badges": CHECKBOX}
        labels = {
            "git_url": "Git URL",
            "dockerfile_repo_url": "Dockerfile repository URL",
            "dockerfile_repo_ref": "Dockerfile repository ref",
        }
        help_texts = {"dockerfile_repo_url": "Optional: take the Dockerfile from this repository instead."}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            # Fixed once created: container names are derived from it.
            self.fields["name"].disabled = True


class EnvironmentForm(TargetSettingsForm):
    """The environment's own fields, its policy, the default target settings its
    placements inherit, and a write-only kubeconfig."""

    kubeconfig = forms.CharField(
        required=False,
        widget=WriteOnlyTextarea(attrs={"rows": 4, "autocomplete": "off"}),
        help_text="Write-only: leave blank to keep the stored one.",
    )
    clear_kubeconfig = forms.BooleanField(
        required=False, widget=CHECKBOX, label="Remove the stored kubeconfig"
    )

    class Meta:
        model = Environment
        fields = [
            "name",
            "order",
            "target_kind",
            "smoke_url",
            "deploy_groups",
            "approve_groups",
            "requires_approval",
            "approvals_required",
            "allow_self_approval",
            "approval_ttl_minutes",
        ]
        labels = {"smoke_url": "Smoke URL", "approval_ttl_minutes": "Approval lifetime (minutes)"}
        widgets = {
            "deploy_groups": forms.CheckboxSelectMultiple(attrs=INLINE),
            "approve_groups": forms.CheckboxSelectMultiple(attrs=INLINE),
            "requires_approval": CHECKBOX,
            "allow_self_approval": CHECKBOX,
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in ("deploy_groups", "approve_groups"):
            self.fields[field].queryset = Group.objects.order_by("name")  # type: ignore[attr-defined]
        if self.instance.pk:
            self.fields["name"].disabled = True
        else:
            self.initial.setdefault("deploy_groups", Group.objects.filter(name__in=permissions.ROLE_GROUPS))
            self.initial.setdefault(
                "approve_groups",
                Group.objects.filter(name__in=[permissions.RELEASE_MANAGERS, permissions.ADMINS]),
            )
        # Both kinds are shown, so switching the kind is one save; only the chosen one is kept.
        self.add_setting_fields(list(KINDS), inherited={})

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

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        self.collect_settings(cleaned.get("target_kind") or self.instance.target_kind)
        return cleaned


class PlacementForm(TargetSettingsForm):
    """An application in an environment, with one input per setting of the environment's
    target kind (all kinds while no environment is chosen)."""

    class Meta:
        model = Placement
        fields = ["repository", "environment", "smoke_url", "public_url", "enabled"]
        labels = {"repository": "Application"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:  # the pair is what the placement is; move it by making another
            self.fields["repository"].disabled = self.fields["environment"].disabled = True
        self.environment = self._environment()
        if self.environment is None:
            self.add_setting_fields(list(KINDS), inherited={})
        else:
            self.add_setting_fields([self.environment.target_kind], self.environment.target_settings or {})

    def _environment(self) -> Environment | None:
        if self.instance.environment_id:
            return self.instance.environment
        chosen = self.data.get("environment") if self.is_bound else self.initial.get("environment")
        if isinstance(chosen, Environment):
            return chosen
        try:
            return Environment.objects.filter(pk=int(chosen)).first() if chosen else None
        except (TypeError, ValueError):
            return None  # the environment field reports it

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        environment = cleaned.get("environment") or self.environment
        if environment is not None:
            self.collect_settings(environment.target_kind)
        return cleaned


class VariableForm(forms.Form):
    """One form for an environment's and a placement's variables; the service owns the
    write-only rules of a secret, so this is not a ModelForm."""

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


class FreezeWindowForm(forms.ModelForm):
    """FreezeWindow.clean() checks what each kind of window needs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Times are read and shown in the server's TIME_ZONE; say which one.
        zone = timezone.get_current_timezone_name()
        for name in ("starts_at", "ends_at", "start_time"):
            self.fields[name].label = f"{self.fields[name].label} ({zone})"

    class Meta:
        model = FreezeWindow
        fields = ["kind", "reason", "starts_at", "ends_at", "weekday", "start_time", "duration_minutes"]
        labels = {
            "starts_at": "Starts (one-off)",
            "ends_at": "Ends (one-off)",
            "weekday": "Day (weekly)",
            "start_time": "At (weekly)",
            "duration_minutes": "Minutes (weekly)",
        }
        widgets = {
            "starts_at": forms.DateTimeInput(attrs={"type": "datetime-local"}),
            "ends_at": forms.DateTimeInput(attrs={"type": "datetime-local"}),
            "weekday": forms.Select(choices=[("", "—"), *WEEKDAYS]),
            "start_time": forms.TimeInput(attrs={"type": "time"}),
        }


class UserRolesForm(forms.Form):
    groups = forms.MultipleChoiceField(
        choices=[(g, g) for g in permissions.ROLE_GROUPS],
        required=False,
        widget=forms.CheckboxSelectMultiple(attrs=INLINE),
    )
