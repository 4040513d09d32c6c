"""OpenAPI documentation of the batch format, generated from the field tables in `schema`.

These serializers are never used to validate (see `probes.ingest.schema` for why); they
exist so drf-spectacular can describe exactly what `parse_batch` accepts.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from probes.ingest.schema import AGENT_FIELDS, ROW_LISTS, Field


def _doc_field(spec: Field) -> serializers.Field:
    common: dict[str, Any] = {"required": spec.required, "help_text": spec.help or None}
    if not spec.required:
        common["allow_null"] = True
    if spec.kind in ("number", "ts"):
        if spec.kind == "ts":
            common["help_text"] = "Unix seconds (UTC), from 2000-01-01 to one hour from now"
            return serializers.FloatField(min_value=946_684_800.0, **common)
        return serializers.FloatField(min_value=spec.minimum, max_value=spec.maximum, **common)
    if spec.kind == "integer":
        maximum = 2**63 - 1 if spec.maximum is None else int(spec.maximum)
        return serializers.IntegerField(
            min_value=None if spec.minimum is None else int(spec.minimum),
            max_value=maximum,
            **common,
        )
    if spec.kind == "string":
        if spec.choices:
            return serializers.ChoiceField(choices=spec.choices, **common)
        return serializers.CharField(min_length=1, max_length=spec.max_length, **common)
    if spec.kind == "strings":
        return serializers.ListField(
            child=serializers.CharField(min_length=1, max_length=spec.max_length),
            max_length=4096,
            **common,
        )
    if spec.kind == "histograms":
        return serializers.DictField(child=HistogramDoc(), **common)
    raise AssertionError(spec.kind)


class HistogramDoc(serializers.Serializer):
    buckets = serializers.ListField(
        child=serializers.ListField(child=serializers.JSONField(), min_length=2, max_length=2),
        help_text='[[upper bound (number or "+Inf"), cumulative count], ...]',
    )
    sum = serializers.FloatField()
    count = serializers.FloatField(min_value=0)


def _serializer(name: str, fields: tuple[Field, ...]) -> type[serializers.Serializer]:
    attrs: dict[str, Any] = {spec.name: _doc_field(spec) for spec in fields}
    return type(name, (serializers.Serializer,), attrs)


AgentDoc = _serializer("IngestAgent", AGENT_FIELDS)
_ROW_DOCS = {
    "gpus": "IngestGpu",
    "deployments": "IngestDeployment",
    "gpu_samples": "IngestGpuSample",
    "engine_samples": "IngestEngineSample",
    "requests": "IngestRequest",
}


def _batch_doc() -> type[serializers.Serializer]:
    attrs: dict[str, Any] = {
        "batch_id": serializers.RegexField(
            r"^[A-Za-z0-9_.:-]{1,64}$",
            help_text="Unique per node; a repeated id is answered 200 'duplicate'",
        ),
        "sent_at": serializers.FloatField(required=False, help_text="Unix seconds"),
        "agent": AgentDoc(required=False),
        "host": serializers.DictField(required=False, help_text="Free-form machine facts"),
    }
    for name, (fields, limit) in ROW_LISTS.items():
        row_doc = _serializer(_ROW_DOCS[name], fields)
        attrs[name] = serializers.ListField(child=row_doc(), required=False, max_length=limit)
    return type("IngestBatch", (serializers.Serializer,), attrs)


BatchDoc = _batch_doc()


class IngestStoredDoc(serializers.Serializer):
    gpu_samples = serializers.IntegerField()
    engine_samples = serializers.IntegerField()
    requests = serializers.IntegerField()


class IngestResultDoc(serializers.Serializer):
    batch_id = serializers.CharField()
    status = serializers.ChoiceField(choices=["stored", "duplicate"])
    stored = IngestStoredDoc()
    duplicate_rows = serializers.IntegerField()


class ErrorItemDoc(serializers.Serializer):
    field = serializers.CharField(help_text="JSON path, e.g. gpu_samples[3].util_pct")
    message = serializers.CharField()


# Built with type(): a class attribute named `errors` would clash with Serializer.errors.
ErrorDoc = type(
    "IngestErrors",
    (serializers.Serializer,),
    {"errors": serializers.ListField(child=ErrorItemDoc())},
)
