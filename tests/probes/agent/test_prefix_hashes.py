"""Prompt block hashes: the chain (exact values), what is tokenized, the bounded worker."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from probes.agent.prefix_hashes import (
    DEFAULT_BLOCK_TOKENS,
    MAX_HASHES_PER_REQUEST,
    PrefixHasher,
    Prompt,
    block_hashes,
    salt_root,
)
from tests.probes.agent.fake_vllm import MODEL, fake_vllm, prompt_tokens

ENGINE_METRICS = (
    "# TYPE vllm:cache_config_info gauge\n"
    'vllm:cache_config_info{block_size="4",cache_dtype="auto",engine="0",'
    'hash_block_size="None"} 1.0\n'
)


def _h(parent: int, tokens: list[int]) -> int:
    """The hash as the module docstring defines it, written out with hashlib."""
    data = parent.to_bytes(8, "little", signed=True) + b"".join(
        t.to_bytes(4, "little") for t in tokens
    )
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)


def test_the_chain_hashes_each_full_block_with_its_parent() -> None:
    # 10 tokens in blocks of 4: two full blocks; the partial last one is not hashed.
    first = _h(0, [1, 2, 3, 4])
    second = _h(first, [5, 6, 7, 8])
    assert block_hashes(list(range(1, 11)), 4) == [first, second]
    # The exact values, so a change of encoding cannot pass unnoticed.
    assert (first, second) == (658132497017838498, 7641984106258271874)
    assert block_hashes([1, 2, 3], 4) == []


def test_equal_prefixes_give_equal_chains_up_to_the_first_differing_block() -> None:
    shared = [7] * 32
    a = block_hashes([*shared, *[1] * 16], 16)
    b = block_hashes([*shared, *[2] * 16], 16)
    assert a[:2] == b[:2]
    assert a[2] != b[2]
    # A block equal to another request's but after another prefix is not the same block.
    assert block_hashes([*[1] * 16, *shared], 16)[1:] != a[:2]


def test_a_cache_salt_starts_another_chain() -> None:
    root = salt_root("tenant-a")
    assert root == int.from_bytes(
        hashlib.blake2b(b"tenant-a", digest_size=8).digest(), "little", signed=True
    )
    assert block_hashes([1, 2, 3, 4], 4, root) == [_h(root, [1, 2, 3, 4])]
    assert salt_root(None) == salt_root("") == 0


def test_a_block_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="block_tokens: must be at least 1, got 0"):
        block_hashes([1, 2], 0)


def _hasher(upstream: str, rows: list[dict[str, Any]], **kwargs: Any) -> PrefixHasher:
    return PrefixHasher(upstream, rows.append, **kwargs)


def test_it_tokenizes_what_the_engine_would_and_keeps_only_ids_given_as_the_prompt() -> None:
    hasher = _hasher("http://127.0.0.1:1", [], max_prompt_bytes=100)
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "tools": None,
            "add_generation_prompt": False, "temperature": 0.2, "cache_salt": "s"}  # fmt: skip
    assert hasher.prompt_of(chat, "/v1/chat/completions", 90) == Prompt(
        tokenize_body={"messages": chat["messages"], "add_generation_prompt": False},
        token_ids=None,
        root=salt_root("s"),
    )
    completion = {"model": MODEL, "prompt": "hello", "max_tokens": 3}
    assert hasher.prompt_of(completion, "/v1/completions", 50) == Prompt({"prompt": "hello"}, None)
    ids = {"model": MODEL, "prompt": [5, 6, 7]}
    assert hasher.prompt_of(ids, "/v1/completions", 50) == Prompt(None, (5, 6, 7))
    assert hasher.prompt_of({"prompt": [[5, 6]]}, "/v1/completions", 50) == Prompt(None, (5, 6))
    # Several prompts in one request, a negative id, a prompt over the size limit: no hashes.
    assert hasher.prompt_of({"prompt": ["a", "b"]}, "/v1/completions", 50) is None
    assert hasher.prompt_of({"prompt": [5, -1]}, "/v1/completions", 50) is None
    assert hasher.prompt_of(completion, "/v1/completions", 101) is None
    assert hasher.prompt_of(chat, "/v1/chat/completions", 101) is None
    assert hasher.prompt_of(ids, "/v1/completions", 101) is None
    assert (hasher.stats.unsupported, hasher.stats.too_large) == (2, 3)


@pytest.fixture
def tokenized() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def upstream(tokenized: list[dict[str, Any]]) -> Iterator[str]:
    with fake_vllm(tokenized=tokenized, metrics=ENGINE_METRICS) as url:
        yield url


def test_it_adds_the_hashes_of_the_tokens_vllm_counted(
    upstream: str, tokenized: list[dict[str, Any]]
) -> None:
    hasher = _hasher(upstream, [])
    body = {"prompt": "a prompt of 21 bytes."}
    tokens = prompt_tokens(body)
    row = {"served_name": MODEL, "prompt_tokens": len(tokens), "output_tokens": 3}
    with httpx.Client(timeout=5) as client:
        hashed = hasher.hashed(row, Prompt(body, None), client)
    # The engine's block size (4, from its cache_config_info): 21 tokens, 5 full blocks.
    assert hashed == {**row, "prefix_block_hashes": block_hashes(tokens, 4),
                      "prefix_block_tokens": 4}  # fmt: skip
    assert len(hashed["prefix_block_hashes"]) == 5
    assert tokenized == [{"model": MODEL, "prompt": "a prompt of 21 bytes."}]
    assert hasher.stats.hashed == 1


def test_a_configured_block_size_wins_and_an_unknown_one_is_the_gpu_default(
    tokenized: list[dict[str, Any]],
) -> None:
    tokens = list(range(40))
    row = {"served_name": MODEL, "prompt_tokens": 40}
    with fake_vllm(tokenized=tokenized) as url, httpx.Client(timeout=5) as client:
        configured = _hasher(url, [], block_tokens=8).hashed(
            row, Prompt(None, tuple(tokens)), client
        )
        default = _hasher(url, []).hashed(row, Prompt(None, tuple(tokens)), client)
    assert configured["prefix_block_tokens"] == 8
    assert configured["prefix_block_hashes"] == block_hashes(tokens, 8)
    assert default["prefix_block_tokens"] == DEFAULT_BLOCK_TOKENS == 16
    assert default["prefix_block_hashes"] == block_hashes(tokens, 16)
    assert tokenized == []  # the ids came with the request


def test_a_token_count_other_than_vllms_or_a_failed_tokenize_leaves_the_row_as_it_was(
    upstream: str,
) -> None:
    hasher = _hasher(upstream, [])
    with httpx.Client(timeout=5) as client:
        wrong_count = {"served_name": MODEL, "prompt_tokens": 12}
        assert hasher.hashed(wrong_count, Prompt({"prompt": "x"}, None), client) == wrong_count
        unknown_model = {"served_name": "other", "prompt_tokens": 11}
        assert hasher.hashed(unknown_model, Prompt({"prompt": "x"}, None), client) == unknown_model
    assert (hasher.stats.failed, hasher.stats.hashed) == (2, 0)


def test_a_chain_longer_than_the_server_takes_is_not_sent() -> None:
    hasher = _hasher("http://127.0.0.1:1", [], block_tokens=1)
    row = {"served_name": MODEL, "prompt_tokens": MAX_HASHES_PER_REQUEST + 1}
    tokens = (0,) * MAX_HASHES_PER_REQUEST
    with httpx.Client() as client:
        assert hasher.hashed(row, Prompt(None, (*tokens, 0)), client) == row
        row["prompt_tokens"] = MAX_HASHES_PER_REQUEST
        at_limit = hasher.hashed(row, Prompt(None, tokens), client)
    assert len(at_limit["prefix_block_hashes"]) == MAX_HASHES_PER_REQUEST
    assert (hasher.stats.too_large, hasher.stats.hashed) == (1, 1)


def test_a_full_queue_records_at_once_without_hashes_and_counts_it() -> None:
    rows: list[dict[str, Any]] = []
    hasher = _hasher("http://127.0.0.1:1", rows, queue_size=1)  # not started: nothing drains
    hasher.submit({"n": 1}, Prompt(None, (1,)))
    hasher.submit({"n": 2}, Prompt(None, (1,)))
    assert rows == [{"n": 2}]
    assert hasher.stats.dropped == 1
    hasher.stop()  # what is still queued is recorded, without hashes
    assert rows == [{"n": 2}, {"n": 1}]
    assert hasher.stats.dropped == 2


def test_the_worker_records_each_row_once_with_its_hashes(upstream: str) -> None:
    rows: list[dict[str, Any]] = []
    done = threading.Event()

    def deliver(row: dict[str, Any]) -> None:
        rows.append(row)
        if len(rows) == 3:
            done.set()

    hasher = PrefixHasher(upstream, deliver, block_tokens=4)
    hasher.start()
    try:
        for prompt in ("first prompt", "second prompt", "third prompt"):
            body = {"prompt": prompt}
            row = {"served_name": MODEL, "prompt_tokens": len(prompt_tokens(body))}
            hasher.submit(row, Prompt(body, None))
        assert done.wait(timeout=5)
    finally:
        hasher.stop()
    assert [r["prefix_block_hashes"] for r in rows] == [
        block_hashes(prompt_tokens({"prompt": p}), 4)
        for p in ("first prompt", "second prompt", "third prompt")
    ]
    assert hasher.stats.hashed == 3
