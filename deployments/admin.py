from django.contrib import admin

from .models import Approval, AuditEvent, Deployment, Environment, FreezeWindow, Repository, Stage, Variable


@admin.register(Repository)
class RepositoryAdmin(admin.ModelAdmin):
    list_display = ["name", "git_url", "default_branch", "image_name"]


class VariableInline(admin.TabularInline):
    model = Variable
    fields = ["name", "is_secret", "plain_value"]
    extra = 0


class FreezeInline(admin.TabularInline):
    model = FreezeWindow
    extra = 0


@admin.register(Environment)
class EnvironmentAdmin(admin.ModelAdmin):
    list_display = ["name", "order", "target_kind", "requires_approval", "approvals_required"]
    filter_horizontal = ["deploy_groups", "approve_groups"]
    inlines = [VariableInline, FreezeInline]


class StageInline(admin.TabularInline):
    model = Stage
    extra = 0
    readonly_fields = ["name", "position", "status", "started_at", "finished_at", "note"]


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ["id", "repository", "environment", "ref", "status", "requested_by", "created_at"]
    list_filter = ["status", "environment", "repository"]
    inlines = [StageInline]
    raw_id_fields = ["rollback_of", "replaced"]


@admin.register(Approval)
class ApprovalAdmin(admin.ModelAdmin):
    list_display = ["deployment", "approver", "decision", "created_at", "expires_at"]


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "actor_name", "action", "object_type", "object_repr", "source_ip"]
    list_filter = ["action"]

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False
