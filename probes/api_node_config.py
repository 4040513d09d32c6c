"""The node-config endpoint: agents pull their desired config and report what runs.

`GET /api/v1/agent/config/` answers `Desired` JSON; `POST` takes an `Observed` report (400
naming the field when malformed; 200 with `stored: false` when an older report arrived
late). Authenticated by the node's agent token only (`probes.auth`).
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from advisor.text import json_text_problem
from probes.agent.desired import Observed, ProtocolError
from probes.auth import IsNodeAgent, NodeTokenAuthentication
from probes.models import Node
from probes.node_config import node_desired_config_get, node_observed_config_store


class NodeConfigView(APIView):
    authentication_classes = [NodeTokenAuthentication]
    permission_classes = [IsNodeAgent]
    required_role = "agent"  # read by the URL-walk test (tests/dashboard/test_access.py)

    @extend_schema(
        operation_id="agent_config_get",
        summary="The desired config of the calling node (generation, config, probe window)",
        responses={200: OpenApiResponse(), 401: OpenApiResponse()},
    )
    def get(self, request: Request) -> Response:
        node = request.auth
        assert isinstance(node, Node)  # IsNodeAgent checked it
        return Response(node_desired_config_get(node=node))

    @extend_schema(
        operation_id="agent_config_report",
        summary="Report what the node runs (state, applied generation, failure, live counters)",
        request=None,
        responses={200: OpenApiResponse(), 400: OpenApiResponse(), 401: OpenApiResponse()},
    )
    def post(self, request: Request) -> Response:
        node = request.auth
        assert isinstance(node, Node)
        bad_text = json_text_problem(request.data)
        if bad_text is not None:
            return Response(
                {"errors": [{"field": bad_text[0], "message": bad_text[1]}]}, status=400
            )
        try:
            observed = Observed.from_json(request.data)
        except ProtocolError as exc:
            return Response({"errors": [{"field": exc.field, "message": exc.message}]}, status=400)
        stored = node_observed_config_store(node_id=node.id, observed=observed)
        return Response({"stored": stored})
