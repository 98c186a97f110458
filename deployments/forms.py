from __future__ import annotations

from typing import Any

from django import forms

from .models import Environment, Repository


class DeployForm(forms.Form):
    repository = forms.ModelChoiceField(queryset=Repository.objects.all(), empty_label=None)
    environment = forms.ModelChoiceField(queryset=Environment.objects.none(), empty_label=None)
    ref = forms.CharField(max_length=250, help_text="Branch, tag or commit SHA.")
    confirm_older = forms.BooleanField(required=False, widget=forms.HiddenInput)
    break_glass_reason = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Only during a freeze window: why this cannot wait. A second person must approve.",
    )

    def __init__(
        self, *args: Any, repositories: list[Repository], environments: list[Environment], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fields["repository"].queryset = Repository.objects.filter(pk__in=[r.pk for r in repositories])
        self.fields["environment"].queryset = Environment.objects.filter(pk__in=[e.pk for e in environments])


class DecisionForm(forms.Form):
    comment = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}), max_length=2000)


class LockForm(forms.Form):
    reason = forms.CharField(max_length=300)
    expires_at = forms.DateTimeField(
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Optional: the lock lifts by itself then.",
    )


class BreakGlassForm(forms.Form):
    break_glass_reason = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class ReshipForm(BreakGlassForm):
    """Roll back or promote one application; the digest the person confirmed must still be what ships."""

    repository = forms.CharField(required=False, max_length=40)
    expected_digest = forms.CharField(required=False, max_length=400)
