"""Prompts of an exact token length for whatever model the server serves, from its tokenizer.

The advisor does not have the node's tokenizer, so it asks the server: vLLM's `/tokenize` and
`/detokenize` endpoints use the served model's own tokenizer and chat template.

- A vocabulary pool: the distinct token ids of a fixed English paragraph (no special tokens).
- token_ids mode (completions only; the default there): the prompt is N ids drawn from the
  pool (seeded) and sent as a token-id list, which vLLM passes to the model unchanged, so
  `usage.prompt_tokens` == N exactly, and distinct prompts keep the prefix cache honest.
- text mode (chat, or completions on request): N' ids are decoded to text and the text is
  re-counted by the server the way the request will be counted (`add_special_tokens` for
  completions; the chat template with the generation prompt for chat). A miss is fixed by
  trimming or appending ids and re-checking, up to `TEXT_RETRIES` rounds, as
  `vllm bench serve`'s random dataset does; what is still off is reported in `PromptReport`
  (in practice byte-level BPE lands on the exact count within a round or two). For chat the
  target N includes the template's tokens; a prompt shorter than the template is refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import numpy as np
import numpy.typing as npt

from advisor.benchmarking.results import PromptReport
from advisor.benchmarking.stream import Api, EndpointError, read_json

PromptMode = Literal["auto", "token_ids", "text"]
TEXT_RETRIES = 10
PREP_CONCURRENCY = 16
MIN_POOL = 8
SEED_TEXT = (
    "Inference servers batch requests continuously: every step the scheduler admits waiting "
    "sequences while key and value caches still fit in memory, decodes one token for each "
    "running sequence, and retires those that reach their stop condition. Throughput grows "
    "with the batch until compute or memory bandwidth saturates; latency grows with queueing. "
    "Quantized weights shrink memory traffic, speculative drafts trade spare compute for "
    "fewer steps, and several small models may share one accelerator when traffic is light. "
    "Quick brown foxes jump over lazy dogs; 0123456789 + - * / = ( ) [ ] { } < > ? ! , . ; :"
)


class PromptError(ValueError):
    """A requested prompt cannot be built; the message names the request index and field."""


@dataclass(frozen=True)
class BuiltPrompts:
    """Prompts in workload order and the (possibly clipped) token counts each asks for."""

    prompts: Sequence[str | list[int]]
    prompt_tokens: Sequence[int]
    output_tokens: Sequence[int]
    report: PromptReport


def resolve_mode(api: Api, mode: PromptMode) -> Literal["token_ids", "text"]:
    if mode == "auto":
        return "token_ids" if api == "completions" else "text"
    if mode == "token_ids" and api == "chat":
        raise PromptError("prompt_mode: token_ids works only with the completions API")
    if mode not in ("token_ids", "text"):
        raise PromptError(f"prompt_mode: expected auto, token_ids or text, got {mode!r}")
    return mode


def fit_lengths(
    prompt_tokens: npt.NDArray[np.int64],
    output_tokens: npt.NDArray[np.int64],
    *,
    max_model_len: int | None,
    clip: bool,
) -> tuple[list[int], list[int], int]:
    """Check (or clip) prompt + output against the model's context; returns lists and clips."""
    prompts = [int(n) for n in prompt_tokens]
    outputs = [int(n) for n in output_tokens]
    if max_model_len is None:
        return prompts, outputs, 0
    clipped = 0
    for index, (prompt, output) in enumerate(zip(prompts, outputs, strict=True)):
        if prompt + output <= max_model_len:
            continue
        if not clip:
            raise PromptError(
                f"request {index}: prompt_tokens {prompt} + output_tokens {output} exceed the "
                f"model's max_model_len {max_model_len} (enable clip_to_max_model_len to shorten)"
            )
        clipped += 1
        outputs[index] = min(output, max_model_len - 1)
        prompts[index] = max(1, min(prompt, max_model_len - outputs[index]))
    return prompts, outputs, clipped


class _ServerTokenizer:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        model: str,
        headers: Mapping[str, str],
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.headers = headers

    async def tokenize(self, text: str, *, special: bool) -> list[int]:
        data = await self._post("/tokenize", {"prompt": text, "add_special_tokens": special})
        return _ids(data, "/tokenize")

    async def chat_count(self, text: str) -> int:
        data = await self._post(
            "/tokenize",
            {"messages": [{"role": "user", "content": text}], "add_generation_prompt": True},
        )
        return len(_ids(data, "/tokenize"))

    async def detokenize(self, ids: Sequence[int]) -> str:
        data = await self._post("/detokenize", {"tokens": list(ids)})
        prompt = data.get("prompt") if isinstance(data, dict) else None
        if not isinstance(prompt, str):
            raise EndpointError(f"{self.base_url}/detokenize: no 'prompt' in the answer")
        return prompt

    async def _post(self, path: str, payload: dict[str, Any]) -> Any:
        return await read_json(
            self.session,
            "POST",
            self.base_url + path,
            payload={"model": self.model, **payload},
            headers=self.headers,
        )


def _ids(data: Any, where: str) -> list[int]:
    tokens = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(tokens, list):
        raise EndpointError(f"{where}: no 'tokens' list in the answer")
    return [int(token) for token in tokens]


async def build_prompts(
    session: aiohttp.ClientSession,
    *,
    base_url: str,
    model: str,
    api: Api,
    mode: PromptMode,
    prompt_tokens: npt.NDArray[np.int64],
    output_tokens: npt.NDArray[np.int64],
    rng: np.random.Generator,
    max_model_len: int | None,
    clip: bool,
    headers: Mapping[str, str],
) -> BuiltPrompts:
    """Build one prompt per request (see the module docstring); raises PromptError/EndpointError."""
    kind = resolve_mode(api, mode)
    prompts_n, outputs_n, clipped = fit_lengths(
        prompt_tokens, output_tokens, max_model_len=max_model_len, clip=clip
    )
    tokenizer = _ServerTokenizer(session, base_url, model, headers)
    pool = np.unique(np.asarray(await tokenizer.tokenize(SEED_TEXT, special=False)))
    if pool.size < MIN_POOL:
        raise EndpointError(f"{base_url}/tokenize: only {pool.size} distinct tokens in the seed")
    draws = [pool[rng.integers(0, pool.size, size=n)].tolist() for n in prompts_n]
    if kind == "token_ids":
        report = PromptReport(mode="token_ids", count=len(draws), clipped=clipped)
        return BuiltPrompts(draws, prompts_n, outputs_n, report)

    overhead = await _overhead(tokenizer, api)
    for index, n in enumerate(prompts_n):
        if n - overhead < 1:
            raise PromptError(
                f"request {index}: prompt_tokens {n} leaves no room for content after the "
                f"{'chat template' if api == 'chat' else 'special tokens'} ({overhead} tokens)"
            )
    gate = asyncio.Semaphore(PREP_CONCURRENCY)
    extra_rng = np.random.default_rng(rng.integers(0, 2**63))

    async def one(index: int) -> tuple[str, int]:
        async with gate:
            ids = draws[index][: prompts_n[index] - overhead]
            return await _fit_text(tokenizer, api, ids, prompts_n[index], pool, extra_rng)

    fitted = await asyncio.gather(*(one(index) for index in range(len(prompts_n))))
    errors = [abs(count - n) for (_text, count), n in zip(fitted, prompts_n, strict=True)]
    report = PromptReport(
        mode="text",
        count=len(fitted),
        mismatched=sum(1 for error in errors if error),
        max_abs_error_tokens=max(errors, default=0),
        clipped=clipped,
        template_overhead_tokens=overhead,
    )
    return BuiltPrompts([text for text, _count in fitted], prompts_n, outputs_n, report)


async def _count(tokenizer: _ServerTokenizer, api: Api, text: str) -> int:
    if api == "chat":
        return await tokenizer.chat_count(text)
    return len(await tokenizer.tokenize(text, special=True))


async def _overhead(tokenizer: _ServerTokenizer, api: Api) -> int:
    """Tokens the request adds around an empty prompt (special tokens or the chat template)."""
    return await _count(tokenizer, api, "")


async def _fit_text(
    tokenizer: _ServerTokenizer,
    api: Api,
    ids: list[int],
    target: int,
    pool: npt.NDArray[np.int64],
    rng: np.random.Generator,
) -> tuple[str, int]:
    text = await tokenizer.detokenize(ids)
    count = await _count(tokenizer, api, text)
    for _round in range(TEXT_RETRIES):
        if count == target:
            break
        plain = await tokenizer.tokenize(text, special=False)
        if count > target:
            plain = plain[: max(1, len(plain) - (count - target))]
        else:
            plain = plain + pool[rng.integers(0, pool.size, size=target - count)].tolist()
        text = await tokenizer.detokenize(plain)
        count = await _count(tokenizer, api, text)
    return text, count
