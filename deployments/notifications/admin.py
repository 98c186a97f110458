from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin

from .models import Attempt, Channel, Delivery, Subscription


class ChannelAdminForm(forms.ModelForm):
    secret = forms.CharField(
        label="Secret or token",
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only; empty keeps the stored one.",
    )

    class Meta:
        model = Channel
        fields = ["name", "kind", "url", "repository", "project", "events", "enabled"]


class SubscriptionInline(admin.TabularInline):
    model = Subscription
    extra = 1


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    """The same model validation as Manage: the URL's outbound check and clean()."""

    form = ChannelAdminForm
    inlines = [SubscriptionInline]
    list_display = ("name", "kind", "enabled")
    readonly_fields = ("secret_set_at",)

    def save_model(self, request: Any, obj: Channel, form: Any, change: bool) -> None:
        if form.cleaned_data.get("secret"):
            obj.set_secret(form.cleaned_data["secret"])
        super().save_model(request, obj, form, change)


class AttemptInline(admin.TabularInline):
    model = Attempt
    extra = 0
    can_delete = False
    readonly_fields = ("number", "started_at", "duration_ms", "status_code", "error")


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ("created_at", "channel", "event", "status", "attempts")
    list_filter = ("status", "event")
    readonly_fields = [f.name for f in Delivery._meta.fields]
    inlines = [AttemptInline]

    def has_add_permission(self, request: Any) -> bool:
        return False
