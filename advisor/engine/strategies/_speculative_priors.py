"""Speculative acceptance: measured from vLLM's counters, else per-method priors with sources.

The per-token acceptance alpha of Leviathan et al. is what carries over between draft
lengths. vLLM's counters give the mean acceptance length 1 + accepted / drafts at the draft
length k they ran with; alpha is the value whose expected tokens per step at that k match it.
(vLLM's "acceptance rate", accepted / drafted tokens, is not alpha: it falls with k.)
"""

from __future__ import annotations

from dataclasses import dataclass

from advisor.engine.catalog import Catalog, CatalogError, ModelSpec
from advisor.engine.scenario import DeploymentSpec, SpecCandidate
from advisor.engine.specdecode import Drafter, alpha_from_acceptance_length, eagle_head


@dataclass(frozen=True)
class Acceptance:
    method: str
    alpha: float
    source: str
    kind: str  # "measured", "published" or "estimate"


_EAGLE = (
    "vLLM PR #16035 (github.com/vllm-project/vllm/pull/16035): Llama-3-8B-Instruct with an EAGLE "
    "head on MT-Bench at batch 1, mean acceptance length 1.89 at k=2 and 2.08 at k=4; alpha "
    "0.55 matches both under Leviathan's expectation"
)
_EAGLE3 = (
    "vLLM PR #24243 (github.com/vllm-project/vllm/pull/24243): an EAGLE-3 head on MiniCPM3 "
    "(RTX 4090, k=6), acceptance at the first position 0.58, mean acceptance length 2.47"
)
_NGRAM = (
    "estimate for chat traffic: n-gram lookup accepts only what repeats the context (kekzl/imp "
    "PR #1460 measured 11% draft acceptance on ordinary prose); copy-heavy traffic (summaries, "
    "code edits, RAG) accepts far more. Measure it with the vllm:spec_decode_* counters"
)
_DRAFT = (
    "estimate: a same-family small draft model; vLLM blog 2024-10-17 reports up to 1.5x at low "
    "load for Llama-3-70B on ShareGPT with a draft model. Measure it with the counters"
)
_MTP = "estimate: multi-token-prediction heads (kekzl/imp PR #1460: 58% draft acceptance, k=2)"

PRIORS: dict[str, tuple[float, str, str]] = {
    "eagle": (0.55, _EAGLE, "published"),
    "eagle3": (0.58, _EAGLE3, "estimate"),
    "ngram": (0.3, _NGRAM, "estimate"),
    "suffix": (0.3, _NGRAM, "estimate"),
    "draft_model": (0.6, _DRAFT, "estimate"),
    "mtp": (0.55, _MTP, "estimate"),
}

# Public draft checkpoints for catalog models (Hugging Face ids; verify before deploying).
KNOWN_DRAFTS: dict[str, tuple[tuple[str, str], ...]] = {
    "Llama-3-8B": (
        ("eagle", "yuhuili/EAGLE-LLaMA3-Instruct-8B"),
        ("eagle3", "yuhuili/EAGLE3-LLaMA3.1-Instruct-8B"),
    ),
    "Llama-3-70B": (
        ("eagle", "yuhuili/EAGLE-LLaMA3-Instruct-70B"),
        ("draft_model", "meta-llama/Llama-3.2-1B-Instruct"),
    ),
}

# Draft models the engine can cost (beyond the catalog): config.json of each, as published.
LLAMA_32_1B = ModelSpec(
    "Llama-3.2-1B", 16, 2048, 32, 8, 64, 8192, 128256, tie_word_embeddings=True,
    max_position_embeddings=131072, source="Hugging Face config.json of meta-llama/Llama-3.2-1B",
    aliases=("llama-3.2-1b-instruct", "meta-llama/llama-3.2-1b-instruct"),
)  # fmt: skip


def measured_acceptance(spec: DeploymentSpec) -> Acceptance | None:
    counters = spec.spec_decode
    if counters is None:
        return None
    length = 1.0 + counters.num_accepted_tokens / counters.num_drafts
    alpha = alpha_from_acceptance_length(length, counters.num_speculative_tokens)
    source = (
        f"measured: vllm:spec_decode_* counters ({counters.num_drafts} drafts, "
        f"{counters.num_accepted_tokens} of {counters.num_draft_tokens} draft tokens accepted "
        f"at k={counters.num_speculative_tokens}: mean acceptance length {length:.2f})"
    )
    return Acceptance(counters.method, alpha, source, "measured")


def prior_for(method: str, model: ModelSpec) -> Acceptance:
    alpha, source, kind = PRIORS[method]
    if method == "eagle" and model.name != "Llama-3-8B":
        kind = "estimate"
        source = f"{source} (measured on Llama-3-8B; an estimate for {model.name})"
    return Acceptance(method, alpha, source, kind)


def acceptance_for(method: str, model: ModelSpec, measured: Acceptance | None) -> Acceptance:
    if measured is not None and measured.method == method:
        return measured
    return prior_for(method, model)


def drafter_for(method: str, model: ModelSpec, draft_path: str | None, catalog: Catalog) -> Drafter:
    """The drafter whose cost the step model charges (raises CatalogError if unknown)."""
    if method in ("ngram", "suffix"):
        return Drafter(method, None)
    if method in ("eagle", "eagle3", "mtp"):
        return Drafter(method, eagle_head(model))
    name = (draft_path or "").split("/")[-1]
    if LLAMA_32_1B.name.lower() in name.lower():
        return Drafter(method, LLAMA_32_1B)
    try:
        return Drafter(method, catalog.model(draft_path or ""))
    except CatalogError:
        raise CatalogError(
            f"speculative_candidates: draft model {draft_path!r} is not in the catalog; add its "
            "config.json under `models` so its cost can be modelled"
        ) from None


def candidates(spec: DeploymentSpec, model: ModelSpec) -> tuple[SpecCandidate, ...]:
    """n-gram always; the user's own candidates; known public heads for catalog models."""
    found: list[SpecCandidate] = [SpecCandidate("ngram")]
    found.extend(spec.speculative_candidates)
    for method, path in KNOWN_DRAFTS.get(model.name, ()):
        if not any(c.method == method for c in found):
            found.append(SpecCandidate(method, path))
    unique: dict[tuple[str, str | None], SpecCandidate] = {}
    for candidate in found:
        unique.setdefault((candidate.method, candidate.model), candidate)
    return tuple(unique.values())
