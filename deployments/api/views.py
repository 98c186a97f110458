"""The /api/v1/ endpoints. Reads go through the selectors and deployments.permissions,
writes through deployments.services inside audit_context(via="api"), so every rule
and audit event is the pages' own."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from deployments import logs, permissions, selectors, services
from deployments.models import Deployment, Environment, Placement, Repository

from . import serializers as s

ERRORS = {code: s.ErrorSerializer for code in (400, 401, 403, 404, 409, 429)}


def _ip(request: Request) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def _deployment(request: Request, pk: int, check: Any = permissions.can_view_deployment) -> Deployment:
    deployment = get_object_or_404(Deployment.objects.select_related("environment", "repository"), pk=pk)
    if not check(request.user, deployment):
        raise PermissionDenied
    return deployment


def _environment(request: Request, name: str) -> Environment:
    environment = get_object_or_404(Environment, name=name)
    if not permissions.can_view_environment(request.user, environment):
        raise PermissionDenied
    return environment


def _application(name: str) -> Repository | None:
    if not name:
        return None
    return get_object_or_404(Repository, name=name)


def _valid(serializer_class: type, data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _shown(deployment: Deployment, code: int = status.HTTP_200_OK) -> Response:
    return Response(
        s.DeploymentDetailSerializer(selectors.deployment_detail(deployment.pk)).data, status=code
    )


class ApplicationList(APIView):
    @extend_schema(responses={200: s.ApplicationSerializer(many=True), **ERRORS})
    def get(self, request: Request) -> Response:
        envs = selectors.visible_environments(request.user)
        apps = Repository.objects.filter(placements__environment__in=envs).distinct().order_by("name")
        return Response(s.ApplicationSerializer(apps, many=True).data)


class EnvironmentList(APIView):
    @extend_schema(responses={200: s.EnvironmentSerializer(many=True), **ERRORS})
    def get(self, request: Request) -> Response:
        return Response(s.EnvironmentSerializer(selectors.visible_environments(request.user), many=True).data)


class EnvironmentDetail(APIView):
    @extend_schema(responses={200: s.EnvironmentSerializer, **ERRORS})
    def get(self, request: Request, name: str) -> Response:
        return Response(s.EnvironmentSerializer(_environment(request, name)).data)


class PlacementList(APIView):
    @extend_schema(responses={200: s.PlacementCurrentSerializer(many=True), **ERRORS})
    def get(self, request: Request) -> Response:
        placements = selectors.placements_with_current(request.user)
        return Response(s.PlacementCurrentSerializer(placements, many=True).data)


class LockList(APIView):
    @extend_schema(responses={200: s.LockEntrySerializer(many=True), **ERRORS})
    def get(self, request: Request) -> Response:
        environments, placements = selectors.locks_in_force(request.user)
        rows = [_lock(env, None, env.lock_expires_at) for env in environments]
        rows += [_lock(p.environment, p, None) for p in placements]
        return Response(s.LockEntrySerializer(rows, many=True).data)


def _lock(environment: Environment, placement: Placement | None, expires_at: Any) -> dict[str, Any]:
    holder = placement or environment
    return {
        "kind": "placement" if placement else "environment",
        "environment": environment.name,
        "application": placement.repository.name if placement else None,
        "locked_by": holder.locked_by.username if holder.locked_by else None,
        "reason": holder.locked_reason,
        "since": holder.locked_at,
        "expires_at": expires_at,
    }


class AuditList(APIView):
    """The audit page's trail, for the roles that page allows."""

    @extend_schema(parameters=[s.AuditFilterSerializer], responses={200: s.AuditPageSerializer, **ERRORS})
    def get(self, request: Request) -> Response:
        if not permissions.can_view_audit(request.user):
            raise PermissionDenied
        query = _valid(s.AuditFilterSerializer, request.query_params)
        limit = query.pop("limit")
        rows = list(selectors.audit_events(**query)[: limit + 1])
        more = len(rows) > limit
        rows = rows[:limit]
        data = {
            "results": s.AuditEventSerializer(rows, many=True).data,
            "next_before": rows[-1].pk if more else None,
        }
        return Response(data)


class DeploymentList(APIView):
    write_scope = "deploy"

    @extend_schema(
        operation_id="deployments_list",
        parameters=[s.DeploymentFilterSerializer],
        responses={200: s.DeploymentPageSerializer, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        query = _valid(s.DeploymentFilterSerializer, request.query_params)
        limit = query.pop("limit")
        qs = selectors.deployment_history(
            request.user,
            repository=query["application"],
            environment=query["environment"],
            status=query["status"],
            before=query["before"],
        )
        rows = list(qs[: limit + 1])
        more = len(rows) > limit
        rows = rows[:limit]
        data = {
            "results": s.DeploymentSerializer(rows, many=True).data,
            "next_before": rows[-1].pk if more else None,
        }
        return Response(data)

    @extend_schema(
        operation_id="deployments_create",
        request=s.DeployRequestSerializer,
        responses={201: s.DeploymentDetailSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = _valid(s.DeployRequestSerializer, request.data)
        repository = get_object_or_404(Repository, name=data.pop("application"))
        environment = get_object_or_404(Environment, name=data.pop("environment"))
        with services.audit_context(via="api"):
            deployment = services.deployment_request(
                user=request.user,
                repository=repository,
                environment=environment,
                source_ip=_ip(request),
                **data,
            )
        return _shown(deployment, status.HTTP_201_CREATED)


class DeploymentDetail(APIView):
    @extend_schema(responses={200: s.DeploymentDetailSerializer, **ERRORS})
    def get(self, request: Request, pk: int) -> Response:
        return _shown(_deployment(request, pk))


class DeploymentCancel(APIView):
    write_scope = "deploy"

    @extend_schema(request=None, responses={200: s.DeploymentDetailSerializer, **ERRORS})
    def post(self, request: Request, pk: int) -> Response:
        deployment = _deployment(request, pk)
        with services.audit_context(via="api"):
            services.deployment_cancel(user=request.user, deployment=deployment, source_ip=_ip(request))
        return _shown(deployment)


class _Decide(APIView):
    write_scope = "approve"
    service: Any = None

    @extend_schema(request=s.DecisionSerializer, responses={200: s.DeploymentDetailSerializer, **ERRORS})
    def post(self, request: Request, pk: int) -> Response:
        deployment = _deployment(request, pk)
        data = _valid(s.DecisionSerializer, request.data)
        with services.audit_context(via="api"):
            type(self).service(user=request.user, deployment=deployment, source_ip=_ip(request), **data)
        return _shown(deployment)


class DeploymentApprove(_Decide):
    service = services.deployment_approve


class DeploymentReject(_Decide):
    service = services.deployment_reject


class DeploymentLog(APIView):
    @extend_schema(parameters=[s.LogQuerySerializer], responses={200: s.LogPageSerializer, **ERRORS})
    def get(self, request: Request, pk: int) -> Response:
        deployment = _deployment(request, pk)
        query = _valid(s.LogQuerySerializer, request.query_params)
        lines = logs.history(deployment, after=query["after"] or None, limit=query["limit"] + 1)
        more = len(lines) > query["limit"]
        lines = lines[: query["limit"]]
        payload = [{"id": x.event_id, "number": x.number, "stage": x.stage, "text": x.text} for x in lines]
        data = {
            "lines": payload,
            "next_after": lines[-1].event_id if more else None,
            "finished": deployment.is_finished,
        }
        return Response(data)


class EnvironmentRollback(APIView):
    write_scope = "deploy"

    @extend_schema(request=s.ReshipSerializer, responses={201: s.DeploymentDetailSerializer, **ERRORS})
    def post(self, request: Request, name: str) -> Response:
        environment = _environment(request, name)
        data = _valid(s.ReshipSerializer, request.data)
        repository = _application(data.pop("application"))
        with services.audit_context(via="api"):
            deployment = services.deployment_rollback(
                user=request.user,
                environment=environment,
                repository=repository,
                source_ip=_ip(request),
                **data,
            )
        return _shown(deployment, status.HTTP_201_CREATED)


class EnvironmentPromote(APIView):
    write_scope = "deploy"

    @extend_schema(request=s.PromoteSerializer, responses={201: s.DeploymentDetailSerializer, **ERRORS})
    def post(self, request: Request, name: str) -> Response:
        target = _environment(request, name)
        data = _valid(s.PromoteSerializer, request.data)
        source = _environment(request, data.pop("source"))
        repository = _application(data.pop("application"))
        with services.audit_context(via="api"):
            deployment = services.deployment_promote(
                user=request.user,
                source=source,
                target=target,
                repository=repository,
                source_ip=_ip(request),
                **data,
            )
        return _shown(deployment, status.HTTP_201_CREATED)


class EnvironmentLock(APIView):
    write_scope = "admin"

    @extend_schema(request=s.LockSerializer, responses={200: s.EnvironmentSerializer, **ERRORS})
    def post(self, request: Request, name: str) -> Response:
        environment = _environment(request, name)
        data = _valid(s.LockSerializer, request.data)
        with services.audit_context(via="api"):
            environment = services.environment_lock(
                user=request.user, environment=environment, source_ip=_ip(request), **data
            )
        return Response(s.EnvironmentSerializer(environment).data)


class EnvironmentUnlock(APIView):
    write_scope = "admin"

    @extend_schema(request=None, responses={200: s.EnvironmentSerializer, **ERRORS})
    def post(self, request: Request, name: str) -> Response:
        environment = _environment(request, name)
        with services.audit_context(via="api"):
            environment = services.environment_unlock(
                user=request.user, environment=environment, source_ip=_ip(request)
            )
        return Response(s.EnvironmentSerializer(environment).data)
