"""What a page calls each stored field: words and a unit, never the field's name.

Services, the API and stored JSON name fields as code does (`ttft_p95_s`, `max_unavailable`);
pages say `label(name)` ("TTFT p95 (s)") for a form input or a column, `term(name)` ("TTFT
p95") inside a sentence that gives the unit with its number, and `plain(value)` for a stored
value (yes / no, not True / False). A name without an entry reads as its words.
"""

from __future__ import annotations

import re
from typing import Any

# name -> (words, unit)
LABELS: dict[str, tuple[str, str]] = {
    # SLOs and gates
    "ttft_p95_s": ("TTFT p95", "s"),
    "tpot_p95_s": ("TPOT p95", "s"),
    "max_quality_loss_points": ("quality loss at most", "points"),
    "max_error_rate": ("error rate at most", "0 to 1"),
    "min_requests": ("requests needed to judge a bake", "requests"),
    # rollout strategy
    "max_unavailable": ("nodes restarting at once", "nodes"),
    "canary_bake_s": ("canary bake", "s"),
    "bake_s": ("bake per batch", "s"),
    "apply_timeout_s": ("time allowed to apply", "s"),
    "probe_interval_s": ("probe interval", "s"),
    "ledger_window_s": ("ledger measuring window", "s"),
    # what-if fields
    "hardware": ("GPU", ""),
    "tensor_parallel": ("GPUs per replica", ""),
    "replicas": ("replicas today", ""),
    # what an assessment found for a deployment it could not assess
    "request_records": ("request records", "requests"),
    "imported_trace": ("imported trace", ""),
    "telemetry_hours": ("load telemetry", "h"),
    "gpu_telemetry_hours": ("GPU telemetry", "h"),
    "vllm_counter_hours": ("vLLM request counters", "h"),
    "vllm_length_histogram_requests": ("requests in vLLM length histograms", "requests"),
    # ledger bases
    "usd_per_hour": ("cost per hour", "USD"),
    "usd_per_1m_tokens": ("cost per million output tokens", "USD"),
}
# A ledger flag's code (`below_half: ...`) as a heading.
FLAG_TITLES = {
    "below_half": "Under half the projection",
    "slo_worse": "Latency SLO worse",
}
_NAME = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")


def term(name: str) -> str:
    """The field's words: "TTFT p95"; an unknown name's words ("foo_bar" -> "foo bar")."""
    known = LABELS.get(name)
    return known[0] if known else name.replace("_", " ")


def label(name: str) -> str:
    """The field's words and unit: "TTFT p95 (s)"."""
    known = LABELS.get(name)
    if not known:
        return name.replace("_", " ")
    words, unit = known
    return f"{words} ({unit})" if unit else words


def plain(value: Any) -> str:
    """A stored value for reading: yes / no for booleans, a dash for None, 2.5 for 2.50."""
    if value is None or value == "":
        return "\u2013"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def sentence(text: str) -> str:
    """A stored message with the field names it quotes said in words (known names only)."""
    return _NAME.sub(lambda m: term(m.group(0)) if m.group(0) in LABELS else m.group(0), text)


def flag_text(flag: str) -> str:
    """A ledger flag ("below_half: realized ...") as "Under half the projection: realized ..."."""
    code, sep, rest = flag.partition(": ")
    if not sep or code not in FLAG_TITLES:
        return sentence(flag)
    return f"{FLAG_TITLES[code]}: {sentence(rest)}"
