"""Assessment API: start one (operators), list and read them, download the scenario snapshot.

Thin views: check the role, validate through the service (errors name the field), call one
service or selector, respond. Any role may read; starting needs `advisor.run_assessment`
(operators and admins). A started assessment runs on the `sim` queue; poll its `progress`.
Starting one identical to one queued or running (same cluster and window) answers that one
(200, `"existing": true`); a user past `ASSESSMENTS_PER_USER_PER_MINUTE` gets a 429.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from advisor.api.bodies import BodyError, json_object
from advisor.api.permissions import HasRequiredRole
from advisor.selectors.assessments import assessment_get, assessment_json, assessments_list
from advisor.services.assessments import (
    AssessmentInputError,
    AssessmentThrottled,
    assessment_start,
)
from probes.roles import OPERATOR, VIEWER

RUN_PERMISSION = "advisor.run_assessment"
LIST_LIMIT = 100


# Any role reads; starting an assessment needs `advisor.run_assessment`. No docstring:
# drf-spectacular would give it to every view below as its description.
class _AssessmentView(APIView):
    permission_classes = [HasRequiredRole]
    required_role = {"GET": VIEWER, "POST": OPERATOR}  # read by the URL-walk test
    required_permission = RUN_PERMISSION


def _error(field: str, message: str, status: int = 400) -> Response:
    return Response({"errors": [{"field": field, "message": message}]}, status=status)


class AssessmentCreateDoc(serializers.Serializer[Any]):
    cluster = serializers.CharField(help_text="the cluster's name")
    window = serializers.CharField(required=False, help_text="e.g. 7d (default), 24h, 2w")


class AssessmentListView(_AssessmentView):
    @extend_schema(operation_id="assessments_list", responses={200: OpenApiResponse()})
    def get(self, request: Request) -> Response:
        cluster = request.query_params.get("cluster")
        rows = assessments_list(cluster_name=cluster)[:LIST_LIMIT]
        return Response([assessment_json(row, brief=True) for row in rows])

    @extend_schema(
        operation_id="assessments_create",
        request=AssessmentCreateDoc,
        responses={
            202: OpenApiResponse(description='queued: a new assessment ("existing": false)'),
            200: OpenApiResponse(
                description="an identical one (same cluster and window) is queued or running: "
                'that one, not a second ("existing": true)'
            ),
            400: OpenApiResponse(),
            403: OpenApiResponse(),
            429: OpenApiResponse(
                description="ASSESSMENTS_PER_USER_PER_MINUTE reached; see Retry-After (s)"
            ),
        },
    )
    def post(self, request: Request) -> Response:
        try:
            data = json_object(request, fields=AssessmentCreateDoc().fields)
        except BodyError as exc:
            return _error(exc.field, exc.message)
        try:
            started = assessment_start(
                cluster=data.get("cluster"), window=data.get("window", "7d"), user=request.user
            )
        except AssessmentInputError as exc:
            return _error(exc.field, exc.message)
        except AssessmentThrottled as exc:
            response = _error("(rate)", exc.message, status=429)
            response["Retry-After"] = str(exc.retry_after_s)
            return response
        body = {**assessment_json(started.assessment, brief=True), "existing": not started.created}
        return Response(body, status=202 if started.created else 200)


class AssessmentDetailView(_AssessmentView):
    @extend_schema(operation_id="assessments_retrieve", responses={200: OpenApiResponse()})
    def get(self, request: Request, assessment_id: int) -> Response:
        assessment = assessment_get(assessment_id=assessment_id)
        if assessment is None:
            return _error("assessment", "not found", status=404)
        return Response(assessment_json(assessment))


class AssessmentScenarioView(_AssessmentView):
    """The engine input snapshot, byte for byte (`python -m advisor.engine assess` takes it)."""

    @extend_schema(operation_id="assessments_scenario", responses={200: OpenApiResponse()})
    def get(self, request: Request, assessment_id: int) -> HttpResponse | Response:
        assessment = assessment_get(assessment_id=assessment_id)
        if assessment is None:
            return _error("assessment", "not found", status=404)
        if not assessment.scenario:
            return _error("scenario", "this assessment stored no scenario", status=404)
        response = HttpResponse(assessment.scenario, content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="scenario-{assessment.pk}.json"'
        return response
