"""The ingest endpoint node agents push batches to (thin: auth, decode, validate, store)."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from probes.auth import IsNodeAgent, NodeTokenAuthentication
from probes.ingest.docs import BatchDoc, ErrorDoc, IngestResultDoc
from probes.ingest.payload import BodyError, decode_body
from probes.ingest.schema import PayloadError, parse_batch
from probes.models import Node
from probes.services import BatchConflict, batch_ingest


def _errors(status: int, errors: list[tuple[str, str]]) -> Response:
    return Response(
        {"errors": [{"field": field, "message": message} for field, message in errors]},
        status=status,
    )


class IngestView(APIView):
    authentication_classes = [NodeTokenAuthentication]
    permission_classes = [IsNodeAgent]
    # The body is decoded by decode_body (gzip, size limit); the parser only documents it.
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="ingest_batch",
        summary="Push one agent batch (JSON, optionally Content-Encoding: gzip)",
        request=BatchDoc,
        responses={
            201: IngestResultDoc,
            200: OpenApiResponse(IngestResultDoc, description="batch id already stored"),
            400: OpenApiResponse(ErrorDoc, description="invalid batch; nothing stored"),
            401: OpenApiResponse(description="missing or unknown agent token"),
            403: OpenApiResponse(description="not an agent token"),
            409: OpenApiResponse(
                ErrorDoc, description="batch id already stored with other rows; nothing stored"
            ),
            413: OpenApiResponse(ErrorDoc, description="body over INGEST_MAX_BODY_BYTES"),
            415: OpenApiResponse(ErrorDoc, description="unsupported Content-Encoding"),
        },
    )
    def post(self, request: Request) -> Response:
        limit = settings.INGEST_MAX_BODY_BYTES
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _errors(400, [("Content-Length", "must be an integer")])
        if length > limit:
            return _errors(413, [("(body)", f"{length} bytes; the limit is {limit}")])
        try:
            data = decode_body(
                request.body,
                content_encoding=request.META.get("HTTP_CONTENT_ENCODING", ""),
                limit_bytes=limit,
            )
            batch = parse_batch(data)
            node = request.auth
            assert isinstance(node, Node)  # IsNodeAgent checked it
            result = batch_ingest(node=node, batch=batch)
        except BodyError as exc:
            return _errors(exc.status, [("(body)", str(exc))])
        except PayloadError as exc:
            return _errors(400, exc.errors)
        except BatchConflict as exc:
            return _errors(409, [("batch_id", str(exc))])
        body = {
            "batch_id": result.batch_id,
            "status": "duplicate" if result.duplicate else "stored",
            "stored": {
                "gpu_samples": result.stored.get("gpu_samples", 0),
                "engine_samples": result.stored.get("engine_samples", 0),
                "requests": result.stored.get("requests", 0),
            },
            "duplicate_rows": result.duplicate_rows,
        }
        return Response(body, status=200 if result.duplicate else 201)
