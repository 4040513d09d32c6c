"""Prompt block hashes against the real vLLM CPU node: its /tokenize, its block size."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from probes.agent.prefix_hashes import PrefixHasher, block_hashes
from probes.agent.proxy import RecordingProxy
from probes.agent.vllm_process import VllmProcess
from tests.support.vllm_node import SERVED_NAME

pytestmark = [pytest.mark.integration]
SYSTEM = "You are a helpful assistant. Answer in one short sentence. " * 24


def _chat(user: str) -> dict[str, Any]:
    return {"model": SERVED_NAME, "max_tokens": 1, "messages": [
        {"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]}  # fmt: skip


def test_two_chats_with_one_long_system_prompt_share_their_leading_hashes(
    vllm_node: VllmProcess,
) -> None:
    base = vllm_node.launch.base_url
    records: list[dict[str, Any]] = []
    hasher = PrefixHasher(base, records.append)  # block size: the engine's (CPU: 128)
    hasher.start()
    proxy = RecordingProxy(base, records.append, hasher=hasher)
    url = f"http://127.0.0.1:{proxy.start()}/v1/chat/completions"
    try:
        with httpx.Client(timeout=120) as client:
            assert client.post(url, json=_chat("What is a GPU?")).status_code == 200
            assert client.post(url, json={**_chat("Name a colour."), "stream": True}).is_success
        deadline = time.monotonic() + 30
        while len(records) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proxy.stop()
        hasher.stop()
    a, b = records
    assert a["prefix_block_tokens"] == b["prefix_block_tokens"] == 128
    # Every full block of the prompt vLLM counted, and no more.
    assert len(a["prefix_block_hashes"]) == a["prompt_tokens"] // 128 >= 2
    assert len(b["prefix_block_hashes"]) == b["prompt_tokens"] // 128
    # The system prompt fills at least two blocks: those are the same in both chains.
    assert a["prefix_block_hashes"][:2] == b["prefix_block_hashes"][:2]
    with httpx.Client(timeout=60) as client:
        tokens = client.post(base + "/tokenize", json=_chat("What is a GPU?")).json()["tokens"]
    assert a["prefix_block_hashes"] == block_hashes(tokens, 128)
    assert hasher.stats.hashed == 2
