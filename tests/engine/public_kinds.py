"""The hardware choice checked against published runs of one model on three GPU kinds.

InferenceMAX run 20667906037 (vLLM 0.13.0, `public_cases.csv`) measured gpt-oss-120b on
B200 (TP1), H100-SXM and H200-SXM (TP2) at the same six workloads (1k/1k, 1k/8k and 8k/1k
tokens at 4 and 64 concurrent requests). For each workload the cost of a million output
tokens on each kind (the catalog's price per GPU-hour over the output tokens per GPU-second)
is computed from the measured throughput and from the engine's prediction (the built-in
profiles): the planner's choice of kind is right when both pick the same cheapest kind.
These rows are in the train split (the profile saw them), so this checks the ranking, not
the accuracy on unseen runs. `tests/engine/test_public_kinds.py` holds the choice to the
measurements; `make bench` (bench_engine) prints the agreement.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from advisor.engine.cases import predict_case, read_cases
from advisor.engine.catalog import DEFAULT_CATALOG
from advisor.engine.profiles import DEFAULT_PROFILES

PUBLIC = Path(__file__).resolve().parents[2] / "advisor" / "engine" / "data" / "public_cases.csv"
MODEL = "configs/openai--gpt-oss-120b.json"
ENGINE_VERSION = "0.13.0"
METRIC = "output_tok_s_per_gpu"


@dataclass(frozen=True)
class KindChoice:
    """One workload's cost per million output tokens per kind, measured and predicted."""

    workload: tuple[int, int, int]  # input tokens, output tokens, concurrency
    measured_usd_per_mtok: dict[str, float]
    predicted_usd_per_mtok: dict[str, float]

    def order(self, costs: dict[str, float]) -> list[str]:
        return sorted(costs, key=lambda kind: (costs[kind], kind))

    @property
    def measured_order(self) -> list[str]:
        return self.order(self.measured_usd_per_mtok)

    @property
    def predicted_order(self) -> list[str]:
        return self.order(self.predicted_usd_per_mtok)


def usd_per_million_tokens(kind: str, tok_per_s_per_gpu: float) -> float:
    price = DEFAULT_CATALOG.gpu(kind).price_usd_per_hour
    return price / (tok_per_s_per_gpu * 3600.0) * 1e6


def kind_choices(path: Path = PUBLIC) -> list[KindChoice]:
    """Every workload measured on three or more kinds, in workload order."""
    cases = [
        case
        for case in read_cases(path)
        if case.model == MODEL and case.engine_version == ENGINE_VERSION and case.metric == METRIC
    ]
    by_workload: dict[tuple[int, int, int], dict[str, tuple[float, float]]] = defaultdict(dict)
    for case in cases:
        predicted = predict_case(case, DEFAULT_PROFILES).predicted
        if predicted is None or case.input_len is None or case.output_len is None:
            raise AssertionError(f"{case.id}: not modellable")
        workload = (case.input_len, case.output_len, case.concurrency or 0)
        by_workload[workload][case.gpu] = (case.value, predicted)
    return [
        KindChoice(
            workload,
            {kind: usd_per_million_tokens(kind, got) for kind, (got, _) in kinds.items()},
            {kind: usd_per_million_tokens(kind, want) for kind, (_, want) in kinds.items()},
        )
        for workload, kinds in sorted(by_workload.items())
        if len(kinds) >= 3
    ]
