from __future__ import annotations

from rest_framework import serializers

from deployments.models import AuditEvent, Deployment, Environment, Placement, Repository, Stage, Status


class ApplicationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Repository
        fields = ["name", "git_url", "default_branch", "image_name"]


class EnvironmentSerializer(serializers.ModelSerializer):
    is_locked = serializers.BooleanField(read_only=True)
    is_frozen = serializers.SerializerMethodField(help_text="A freeze window covers now.")
    locked_by = serializers.CharField(source="locked_by.username", default=None, read_only=True)

    class Meta:
        model = Environment
        fields = [
            "name",
            "order",
            "target_kind",
            "requires_approval",
            "approvals_required",
            "allow_self_approval",
            "is_locked",
            "is_frozen",
            "locked_by",
            "locked_reason",
            "locked_at",
            "lock_expires_at",
        ]

    def get_is_frozen(self, environment: Environment) -> bool:
        return environment.active_freeze() is not None


class PlacementSerializer(serializers.ModelSerializer):
    application = serializers.CharField(source="repository.name")
    environment = serializers.CharField(source="environment.name")

    class Meta:
        model = Placement
        fields = ["application", "environment", "enabled", "public_url", "locked_reason", "locked_at"]


class StageSerializer(serializers.ModelSerializer):
    class Meta:
        model = Stage
        fields = ["name", "status", "started_at", "finished_at", "note"]


class DeploymentSerializer(serializers.ModelSerializer):
    application = serializers.CharField(source="repository.name")
    environment = serializers.CharField(source="environment.name")
    requested_by = serializers.CharField(source="requested_by.username", default=None)

    class Meta:
        model = Deployment
        fields = [
            "id",
            "application",
            "environment",
            "ref",
            "commit_sha",
            "image_digest",
            "status",
            "phase",
            "trigger",
            "error",
            "requested_by",
            "rollback_of",
            "break_glass_reason",
            "tests_passed",
            "created_at",
            "started_at",
            "finished_at",
        ]


class DeploymentDetailSerializer(DeploymentSerializer):
    stages = StageSerializer(many=True, read_only=True)

    class Meta(DeploymentSerializer.Meta):
        fields = [*DeploymentSerializer.Meta.fields, "stages"]


class PlacementCurrentSerializer(PlacementSerializer):
    current = DeploymentSerializer(
        read_only=True, allow_null=True, help_text="The last succeeded deployment."
    )

    class Meta(PlacementSerializer.Meta):
        fields = [*PlacementSerializer.Meta.fields, "current"]


class LockEntrySerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["environment", "placement"])
    environment = serializers.CharField()
    application = serializers.CharField(allow_null=True, help_text="Null for an environment lock.")
    locked_by = serializers.CharField(allow_null=True)
    reason = serializers.CharField()
    since = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_name")

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "created_at",
            "actor",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "commit_sha",
            "image_digest",
            "source_ip",
            "details",
        ]


class AuditPageSerializer(serializers.Serializer):
    results = AuditEventSerializer(many=True)
    next_before = serializers.IntegerField(allow_null=True, help_text="Pass as ?before= for the next page.")


class AuditFilterSerializer(serializers.Serializer):
    actor = serializers.CharField(required=False, default="", allow_blank=True)
    action = serializers.CharField(required=False, default="", allow_blank=True)
    object_type = serializers.CharField(required=False, default="", allow_blank=True)
    q = serializers.CharField(required=False, default="", allow_blank=True, max_length=200)
    before = serializers.IntegerField(required=False, default=None, min_value=1)
    limit = serializers.IntegerField(required=False, default=50, min_value=1, max_value=500)


class DeploymentPageSerializer(serializers.Serializer):
    results = DeploymentSerializer(many=True)
    next_before = serializers.IntegerField(allow_null=True, help_text="Pass as ?before= for the next page.")


class DeploymentFilterSerializer(serializers.Serializer):
    application = serializers.CharField(required=False, default="")
    environment = serializers.CharField(required=False, default="")
    status = serializers.ChoiceField(choices=Status.choices, required=False, default="")
    before = serializers.IntegerField(required=False, default=None, min_value=1)
    limit = serializers.IntegerField(required=False, default=50, min_value=1, max_value=200)


class DeployRequestSerializer(serializers.Serializer):
    application = serializers.CharField(max_length=40)
    environment = serializers.CharField(max_length=40)
    ref = serializers.CharField(max_length=250)
    break_glass_reason = serializers.CharField(required=False, default="", allow_blank=True)
    confirm_older = serializers.BooleanField(required=False, default=False)


class DecisionSerializer(serializers.Serializer):
    comment = serializers.CharField(required=False, default="", allow_blank=True, max_length=2000)


class ReshipSerializer(serializers.Serializer):
    application = serializers.CharField(required=False, default="", allow_blank=True, max_length=40)
    expected_digest = serializers.CharField(required=False, default="", allow_blank=True, max_length=400)
    break_glass_reason = serializers.CharField(required=False, default="", allow_blank=True)


class PromoteSerializer(ReshipSerializer):
    source = serializers.CharField(max_length=40, help_text="The environment whose digest ships.")


class LockSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=300)
    expires_at = serializers.DateTimeField(required=False, default=None, allow_null=True)


class LogLineSerializer(serializers.Serializer):
    id = serializers.CharField()
    number = serializers.IntegerField()
    stage = serializers.CharField()
    text = serializers.CharField()


class LogPageSerializer(serializers.Serializer):
    lines = LogLineSerializer(many=True)
    next_after = serializers.CharField(allow_null=True, help_text="Pass as ?after= for the next page.")
    finished = serializers.BooleanField()


class LogQuerySerializer(serializers.Serializer):
    after = serializers.CharField(required=False, default="")
    limit = serializers.IntegerField(required=False, default=1000, min_value=1, max_value=5000)


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
