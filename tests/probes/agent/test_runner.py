"""The agent's runner: the recording proxy's rows reach the spool with their block hashes,
and the batch's agent metadata counts the rows that went without them; the server takes it."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import httpx

from probes.agent.config import AgentConfig, parse_proxy
from probes.agent.prefix_hashes import block_hashes
from probes.agent.runner import Agent
from probes.agent.samplers.host import HostSampler
from probes.agent.spool import Spool
from probes.ingest.schema import parse_batch
from tests.probes.agent.fake_vllm import MODEL, fake_vllm, prompt_tokens


def test_the_proxys_rows_are_sealed_with_their_hashes(tmp_path: Path) -> None:
    with fake_vllm() as upstream:
        proxy = parse_proxy("127.0.0.1:0", upstream, block_tokens=4)
        config = AgentConfig(hostname="node-1", spool_dir=tmp_path, proxy=proxy)
        spool = Spool(tmp_path, 2**20)
        agent = Agent(config, [], HostSampler("node-1"), spool, None)
        port = agent.start_proxy()
        try:
            body = {"model": MODEL, "prompt": "twenty-one bytes long", "max_tokens": 2}
            assert httpx.post(f"http://127.0.0.1:{port}/v1/completions", json=body).is_success
            deadline = time.monotonic() + 5
            while agent.stats.requests < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            agent.shutdown()  # seals the open batch
        agent.write_stats(tmp_path / "stats.json")
    entry = spool.oldest()
    assert entry is not None
    payload = json.loads(gzip.decompress(entry.path.read_bytes()))
    requests = payload["requests"]
    assert requests["prompt_tokens"] == [21]
    assert requests["prefix_block_hashes"] == [block_hashes(prompt_tokens(body), 4)]
    assert requests["prefix_block_tokens"] == [4]
    assert payload["agent"]["dropped_prefix_hashes"] == 0
    (row,) = parse_batch(payload).requests
    assert row[-2:] == (block_hashes(prompt_tokens(body), 4), 4)
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["prefix_hashes"] == {"hashed": 1, "dropped": 0, "too_large": 0, "failed": 0,
                                      "unsupported": 0}  # fmt: skip
