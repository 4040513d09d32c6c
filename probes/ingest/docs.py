"""OpenAPI documentation of the batch format, generated from the field tables in `schema`.

These serializers are never used to validate (see `probes.ingest.schema` for why); they
exist so drf-spectacular can describe exactly what `parse_batch` accepts.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers

from probes.ingest.schema import AGENT_FIELDS, COLUMN_LISTS, ROW_LISTS, Field


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
    if spec.kind == "int64s":
        return serializers.ListField(
            child=serializers.IntegerField(min_value=-(2**63), max_value=2**63 - 1),
            max_length=spec.max_length,
            **common,
        )
    if spec.kind == "histograms":
        return serializers.DictField(child=HistogramDoc(), **common)
    if spec.kind == "object":
        return serializers.DictField(child=serializers.JSONField(), **common)
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


def _columns_serializer(
    name: str, fields: tuple[Field, ...], limit: int
) -> type[serializers.Serializer]:
    """The column layout: per field an array of that field's values, one per row."""
    attrs: dict[str, Any] = {}
    for spec in fields:
        value = _doc_field(spec)
        value.required = True  # inside the array: one value per row, null where allowed
        value.help_text = None
        what = "required: no nulls" if spec.required else "optional: may be left out or hold nulls"
        attrs[spec.name] = serializers.ListField(
            child=value,
            required=spec.required,
            max_length=limit,
            help_text=f"{spec.help + '. ' if spec.help else ''}One value per row ({what})",
        )
    doc = "One array per field, all of the same length (row i is the i-th value of each)."
    return type(name, (serializers.Serializer,), {**attrs, "__doc__": doc})


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
        if name not in COLUMN_LISTS:
            attrs[name] = serializers.ListField(child=row_doc(), required=False, max_length=limit)
            continue
        # Either layout: a list of row objects, or one array per field (fewer bytes, and
        # far less server CPU per row). Both stay accepted: agents in the field send rows.
        columns_doc = _columns_serializer(_ROW_DOCS[name] + "Columns", fields, limit)
        either = PolymorphicProxySerializer(
            component_name=_ROW_DOCS[name] + "Rows",
            serializers=[row_doc(many=True), columns_doc],
            resource_type_field_name=None,
            many=False,
        )
        # On a field class, not as the declared field: serializers deep-copy their declared
        # fields, and the copy would lose many=False.
        field_class = extend_schema_field(either)(type(name, (serializers.JSONField,), {}))
        attrs[name] = field_class(required=False)
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
    field = serializers.CharField(
        help_text="JSON path: gpu_samples[3].util_pct (rows), gpu_samples.util_pct[3] (columns)"
    )
    message = serializers.CharField()


# Built with type(): a class attribute named `errors` would clash with Serializer.errors.
ErrorDoc = type(
    "IngestErrors",
    (serializers.Serializer,),
    {"errors": serializers.ListField(child=ErrorItemDoc())},
)
