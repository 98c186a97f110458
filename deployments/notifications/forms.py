from __future__ import annotations

from typing import Any

from django import forms

from ..forms_manage import CHECKBOX
from ..models import Environment, Placement
from .models import Channel, Event


class ChannelForm(forms.ModelForm):
    """The Manage form. The URL's validator and Channel.clean() are the model's, so the
    Django admin refuses what this form refuses."""

    events = forms.MultipleChoiceField(
        choices=Event.choices, widget=forms.CheckboxSelectMultiple, required=False
    )
    environments = forms.ModelMultipleChoiceField(
        Environment.objects.all(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Every application in these environments.",
    )
    placements = forms.ModelMultipleChoiceField(
        Placement.objects.select_related("repository", "environment"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="One application in one environment.",
    )
    secret = forms.CharField(
        label="Secret or token",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Webhook: empty makes one (shown once). Commit status: the API token. "
        "Never shown again; empty keeps the stored one.",
    )
    regenerate = forms.BooleanField(label="Make a new webhook secret", required=False, widget=CHECKBOX)

    class Meta:
        model = Channel
        fields = ["name", "kind", "url", "repository", "project", "events", "enabled"]
        widgets = {"enabled": CHECKBOX}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            subs = list(self.instance.subscriptions.all())
            self.initial["environments"] = [s.environment_id for s in subs if s.environment_id]
            self.initial["placements"] = [s.placement_id for s in subs if s.placement_id]
            self.fields["name"].disabled = True
        else:
            del self.fields["regenerate"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not data.get("environments") and not data.get("placements"):
            self.add_error(None, "Subscribe to at least one environment or placement.")
        return data
