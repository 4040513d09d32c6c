"""Forms of the dashboard: input checked here, names the field, before any service runs."""

from __future__ import annotations

import json
from typing import Any

from django import forms

from advisor.models import BenchmarkEndpoint, JobKind
from advisor.services.benchmarks import BenchmarkJobError
from probes.ingest.schema import MAX_HF_CONFIG_BYTES
from probes.models import Cluster, ModelDeployment, TraceFormat

TRACE_UPLOAD_MAX_BYTES = 512 * 1024 * 1024


class TraceImportForm(forms.Form):
    deployment = forms.ModelChoiceField(
        queryset=ModelDeployment.objects.select_related("cluster"),
        help_text="The deployment whose traffic this trace is.",
    )
    format = forms.ChoiceField(choices=TraceFormat.choices)
    file = forms.FileField(help_text="CSV, JSON lines or JSON; may be gzip-compressed.")
    start = forms.DateTimeField(
        required=False,
        help_text="Where relative traces (burstgpt, mooncake, csv arrival_s) start, UTC; "
        "default: the current hour. Overrides a vllm-bench run's own start.",
        widget=forms.DateTimeInput(attrs={"placeholder": "2025-01-31 14:00"}),
    )
    shift_start_at = forms.DateTimeField(
        required=False,
        label="Shift: start at",
        help_text="Move the trace so its first request is at this time (UTC), e.g. an Azure "
        "2023 trace into this week. Leave empty to keep the file's times.",
        error_messages={"invalid": "expected a date and time such as 2025-01-31 14:00 (UTC)"},
        widget=forms.DateTimeInput(attrs={"placeholder": "2025-01-31 14:00"}),
    )
    shift_end_now = forms.BooleanField(
        required=False,
        label="Shift: end now",
        help_text="Move the trace so its last request is just before the current UTC hour, "
        "the end of the windows assessments read (they cover whole hours), so the next "
        "assessment uses all of it.",
    )
    dry_run = forms.BooleanField(required=False, help_text="Check the file; store nothing.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["deployment"].label_from_instance = (  # type: ignore[attr-defined]
            lambda d: f"{d.cluster.name} / {d.served_name}"
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("shift_start_at") is not None and data.get("shift_end_now"):
            self.add_error("shift_start_at", "choose one shift: clear this or untick shift_end_now")
        return data

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if upload.size > TRACE_UPLOAD_MAX_BYTES:
            raise forms.ValidationError(
                f"{upload.size / 2**20:,.0f} MiB; the limit is "
                f"{TRACE_UPLOAD_MAX_BYTES / 2**20:,.0f} MiB (import bigger files with "
                "manage.py import_trace)"
            )
        return upload


ASSESSMENT_WINDOWS = (("24h", "last 24 hours"), ("7d", "last 7 days"), ("14d", "last 14 days"),
                      ("30d", "last 30 days"))  # fmt: skip


class AssessmentStartForm(forms.Form):
    cluster = forms.ModelChoiceField(
        queryset=Cluster.objects.all(), to_field_name="name", help_text="What to assess."
    )
    window = forms.ChoiceField(
        choices=ASSESSMENT_WINDOWS,
        initial="7d",
        help_text="Telemetry and traces up to the last whole hour.",
    )


class BenchmarkStartForm(forms.Form):
    """A benchmark job, field by field; `job_args()` gives `benchmark_job_create`'s arguments.

    The service validates (its errors name its own fields: `workload.rate_rps`,
    `sweep.values[2]`); `SERVICE_FIELDS` maps those back onto this form's fields.
    """

    endpoint = forms.ModelChoiceField(
        queryset=BenchmarkEndpoint.objects.select_related("node", "deployment"),
        help_text="A registered endpoint (admins register them in the Django admin).",
    )
    kind = forms.ChoiceField(choices=JobKind.choices, initial=JobKind.RUN)
    workload_kind = forms.ChoiceField(
        label="workload",
        choices=(
            ("concurrency", "closed loop (concurrency)"),
            ("poisson", "open loop (rate)"),
            ("replay", "replay the deployment's requests"),
        ),
        initial="concurrency",
    )
    num_requests = forms.IntegerField(min_value=1, initial=100, required=False)
    concurrency = forms.IntegerField(min_value=1, initial=8, required=False)
    rate_rps = forms.FloatField(label="rate (req/s)", required=False)
    burstiness = forms.FloatField(initial=1.0, required=False, help_text="1 = Poisson")
    prompt_tokens = forms.IntegerField(min_value=1, initial=256, required=False)
    output_tokens = forms.IntegerField(min_value=1, initial=128, required=False)
    sweep_over = forms.ChoiceField(
        choices=(("concurrency", "concurrency"), ("rate", "rate")), required=False
    )
    sweep_values = forms.CharField(
        required=False, help_text="Comma-separated, e.g. 1, 8, 32 (sweeps only)."
    )
    goodput_min_rate_rps = forms.FloatField(required=False, label="goodput: lowest rate")
    goodput_max_rate_rps = forms.FloatField(required=False, label="goodput: highest rate")
    ab_baseline_args = forms.CharField(
        required=False, label="A/B: baseline args (JSON)",
        widget=forms.TextInput(attrs={"placeholder": '{"max_num_seqs": 16}'}),
    )  # fmt: skip
    ab_candidate_args = forms.CharField(
        required=False, label="A/B: candidate args (JSON)",
        widget=forms.TextInput(attrs={"placeholder": '{"max_num_seqs": 64}'}),
    )  # fmt: skip
    ab_candidate_model = forms.CharField(
        required=False, label="A/B: candidate checkpoint", max_length=1000,
        help_text="A local path or Hugging Face id on the node (e.g. an AWQ checkpoint); "
        "empty: the endpoint's own.",
    )  # fmt: skip
    ab_candidate_quant = forms.CharField(
        required=False, label="A/B: candidate precision", max_length=32,
        help_text="e.g. awq-int4, gptq-int4, fp8: labels its quality figure (the catalog's); "
        "empty: read from a local checkpoint's config.json.",
    )  # fmt: skip
    trace_start = forms.DateTimeField(required=False, help_text="Replay: from (UTC).")
    trace_end = forms.DateTimeField(required=False, help_text="Replay: until (UTC).")
    slo_ttft_ms = forms.FloatField(required=False, label="SLO: TTFT per request (ms)")
    slo_tpot_ms = forms.FloatField(required=False, label="SLO: TPOT per request (ms)")
    warmup_requests = forms.IntegerField(min_value=0, initial=0, required=False)
    calibrate = forms.BooleanField(
        required=False, help_text="Fit the engine's profile for this hardware from the runs."
    )

    SERVICE_FIELDS = {
        "endpoint": "endpoint", "kind": "kind", "workload.kind": "workload_kind",
        "workload.num_requests": "num_requests", "workload.concurrency": "concurrency",
        "workload.rate_rps": "rate_rps", "workload.burstiness": "burstiness",
        "workload.prompt_tokens": "prompt_tokens", "workload.output_tokens": "output_tokens",
        "workload": "workload_kind", "sweep.over": "sweep_over", "sweep.values": "sweep_values",
        "sweep": "sweep_values", "goodput.min_rate_rps": "goodput_min_rate_rps",
        "goodput.max_rate_rps": "goodput_max_rate_rps", "goodput": "goodput_min_rate_rps",
        "ab": "ab_baseline_args", "ab.baseline_args": "ab_baseline_args",
        "ab.candidate_args": "ab_candidate_args", "ab.candidate_model": "ab_candidate_model",
        "ab.candidate_quant": "ab_candidate_quant", "trace": "trace_start",
        "trace.start": "trace_start", "trace.end": "trace_end", "slo": "slo_ttft_ms",
        "slo.ttft_ms": "slo_ttft_ms", "slo.tpot_ms": "slo_tpot_ms",
        "options.warmup_requests": "warmup_requests",
    }  # fmt: skip

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["endpoint"].label_from_instance = (  # type: ignore[attr-defined]
            lambda e: f"{e.deployment.served_name} on {e.node.hostname} ({e.base_url})"
        )

    def form_field(self, service_field: str) -> str | None:
        """This form's field for a service error's field (`sweep.values[2]` -> sweep_values)."""
        base = service_field.split("[")[0]
        while base:
            if base in self.SERVICE_FIELDS:
                return self.SERVICE_FIELDS[base]
            base = base.rpartition(".")[0]
        return None

    def _json(self, name: str, field: str) -> dict[str, Any]:
        raw = (self.cleaned_data.get(name) or "").strip()
        if not raw:
            return {}
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise BenchmarkJobError(field, f"not valid JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise BenchmarkJobError(field, "expected a JSON object of vLLM engine args")
        return value

    def _values(self) -> list[float | int]:
        raw = (self.cleaned_data.get("sweep_values") or "").replace(";", ",")
        values: list[float | int] = []
        for index, part in enumerate(p.strip() for p in raw.split(",") if p.strip()):
            try:
                number = float(part)
            except ValueError:
                field = f"sweep.values[{index}]"
                raise BenchmarkJobError(field, f"not a number: {part!r}") from None
            values.append(int(number) if number.is_integer() else number)
        return values

    def job_args(self) -> dict[str, Any]:
        """`benchmark_job_create` keyword arguments (raises BenchmarkJobError naming a field)."""
        data = self.cleaned_data
        kind = data["kind"]
        workload: dict[str, Any] = {"kind": data["workload_kind"]}
        for name in ("num_requests", "concurrency", "rate_rps", "burstiness", "prompt_tokens",
                     "output_tokens"):  # fmt: skip
            if data.get(name) is not None:
                workload[name] = data[name]
        args: dict[str, Any] = {
            "endpoint_id": data["endpoint"].pk,
            "kind": kind,
            "workload": workload,
            "options": {
                "warmup_requests": data.get("warmup_requests") or 0,
                "calibrate": bool(data.get("calibrate")),
            },
        }
        if kind == JobKind.SWEEP:
            args["sweep"] = {"over": data.get("sweep_over") or "concurrency",
                             "values": self._values()}  # fmt: skip
        if kind == JobKind.GOODPUT:
            args["goodput"] = {
                key: data[f"goodput_{key}"]
                for key in ("min_rate_rps", "max_rate_rps")
                if data.get(f"goodput_{key}") is not None
            }
        if kind == JobKind.AB:
            args["ab"] = {
                "baseline_args": self._json("ab_baseline_args", "ab.baseline_args"),
                "candidate_args": self._json("ab_candidate_args", "ab.candidate_args"),
            }
            for name in ("model", "quant"):
                value = (data.get(f"ab_candidate_{name}") or "").strip()
                if value:
                    args["ab"][f"candidate_{name}"] = value
        if data["workload_kind"] == "replay":
            start, end = data.get("trace_start"), data.get("trace_end")
            args["trace"] = {
                "start": start.isoformat() if start else None,
                "end": end.isoformat() if end else None,
            }
        slo = {
            key: data[f"slo_{key}"]
            for key in ("ttft_ms", "tpot_ms")
            if data.get(f"slo_{key}") is not None
        }
        if slo:
            args["slo"] = slo
        return args


class HfConfigUploadForm(forms.Form):
    """A deployment's config.json, for when its agent cannot read the model's files."""

    file = forms.FileField(
        label="config.json",
        help_text=f"The model's Hugging Face config.json, at most "
        f"{MAX_HF_CONFIG_BYTES // 1024} KiB.",
    )

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if upload.size > MAX_HF_CONFIG_BYTES:
            # Refused before it is read: the limit the ingest API holds an agent to.
            raise forms.ValidationError(
                f"{upload.size} bytes; at most {MAX_HF_CONFIG_BYTES // 1024} KiB"
            )
        return upload
