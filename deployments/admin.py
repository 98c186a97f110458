"""The Django admin, for configuration only. Deployments, approvals and the audit
trail change through the services (which check permissions and write the audit
trail), so the admin shows them but cannot add, change or delete them."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from .models import (
    Approval,
    AuditEvent,
    Deployment,
    Environment,
    FreezeWindow,
    Placement,
    PlacementVariable,
    Repository,
    Stage,
    Variable,
)


@admin.register(Repository)
class RepositoryAdmin(admin.ModelAdmin):
    list_display = ["name", "git_url", "default_branch", "image_name", "public_badges"]


class VariableForm(forms.ModelForm):
    # Write-only: the stored value never goes back to the browser, so a secret cannot
    # be read off the change page (or its HTML source).
    value = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Leave blank to keep the stored value.",
    )

    class Meta:
        model = Variable
        fields = ["name", "is_secret"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stored = self.instance.value if self.instance.pk else ""

    def save(self, commit: bool = True) -> Variable:
        variable = super().save(commit=False)
        value = self.cleaned_data.get("value") or ""
        if value:
            variable.set_value(value)
        elif "is_secret" in self.changed_data:
            # The value moves between the plain and the encrypted column.
            variable.set_value(self._stored)
        if commit:
            variable.save()
        return variable


class VariableInline(admin.TabularInline):
    model = Variable
    form = VariableForm
    fields = ["name", "is_secret", "value", "display_value"]
    readonly_fields = ["display_value"]
    extra = 0


class FreezeInline(admin.TabularInline):
    model = FreezeWindow
    extra = 0


@admin.register(Environment)
class EnvironmentAdmin(admin.ModelAdmin):
    list_display = ["name", "order", "target_kind", "requires_approval", "approvals_required"]
    filter_horizontal = ["deploy_groups", "approve_groups"]
    # Locks are taken and released on the environment page, which audits them.
    readonly_fields = ["locked_by", "locked_reason", "locked_at", "lock_expires_at"]
    inlines = [VariableInline, FreezeInline]


class ViewOnly:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class StageInline(ViewOnly, admin.TabularInline):
    model = Stage
    extra = 0


class ViewOnlyAdmin(ViewOnly, admin.ModelAdmin):
    pass


@admin.register(Deployment)
class DeploymentAdmin(ViewOnlyAdmin):
    # Every field is pipeline state or bound by approvals (commit, digest, config hash):
    # an edit here would skip the queue, the approvals and the audit trail.
    list_display = ["id", "repository", "environment", "ref", "status", "requested_by", "created_at"]
    list_filter = ["status", "environment", "repository"]
    inlines = [StageInline]


@admin.register(Approval)
class ApprovalAdmin(ViewOnlyAdmin):
    list_display = ["deployment", "approver", "decision", "created_at", "expires_at"]


@admin.register(AuditEvent)
class AuditEventAdmin(ViewOnlyAdmin):
    list_display = ["created_at", "actor_name", "action", "object_type", "object_repr", "source_ip"]
    list_filter = ["action"]


class PlacementVariableForm(VariableForm):
    class Meta(VariableForm.Meta):
        model = PlacementVariable


class PlacementVariableInline(VariableInline):
    model = PlacementVariable
    form = PlacementVariableForm


@admin.register(Placement)
class PlacementAdmin(admin.ModelAdmin):
    # The ModelForm runs Placement.clean(): a port or Deployment another placement uses is refused here too.
    list_display = ["repository", "environment", "enabled", "public_url"]
    list_filter = ["environment", "enabled"]
    inlines = [PlacementVariableInline]
