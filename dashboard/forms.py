"""Forms of the dashboard: input checked here, names the field, before any service runs."""

from __future__ import annotations

from typing import Any

from django import forms

from probes.models import ModelDeployment, TraceFormat

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
    dry_run = forms.BooleanField(required=False, help_text="Check the file; store nothing.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["deployment"].label_from_instance = (  # type: ignore[attr-defined]
            lambda d: f"{d.cluster.name} / {d.served_name}"
        )

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if upload.size > TRACE_UPLOAD_MAX_BYTES:
            raise forms.ValidationError(
                f"{upload.size / 2**20:,.0f} MiB; the limit is "
                f"{TRACE_UPLOAD_MAX_BYTES / 2**20:,.0f} MiB (import bigger files with "
                "manage.py import_trace)"
            )
        return upload
