import json
import urllib.request
from pathlib import Path

import pytest

from probes.agent.vllm_process import (
    VllmLaunch,
    VllmProcess,
    VllmStartError,
    engine_args_to_argv,
    is_healthy,
)
from tests.support.vllm_node import tiny_launch


def test_it_turns_engine_args_into_vllm_flags() -> None:
    argv = engine_args_to_argv(
        {
            "max_num_seqs": 64,
            "enable_chunked_prefill": False,
            "enable_prefix_caching": True,
            "quantization": None,
            "speculative_config": {"method": "ngram", "num_speculative_tokens": 4},
        }
    )
    assert argv == (
        "--max-num-seqs", "64",
        "--no-enable-chunked-prefill",
        "--enable-prefix-caching",
        "--speculative-config", '{"method":"ngram","num_speculative_tokens":4}',
    )  # fmt: skip


def test_it_builds_the_module_command_line() -> None:
    launch = VllmLaunch(python="/py", model="/m", served_name="m", port=8001, engine_args=("-x",))
    assert launch.argv() == [
        "/py", "-m", "vllm.entrypoints.openai.api_server", "--model", "/m",
        "--served-model-name", "m", "--host", "127.0.0.1", "--port", "8001", "-x",
    ]  # fmt: skip


def test_it_reports_a_server_that_exits_at_once(tmp_path: Path) -> None:
    launch = VllmLaunch(python="/bin/false", model="/m", served_name="m", port=1)
    process = VllmProcess(launch, tmp_path / "vllm.log")
    with pytest.raises(VllmStartError, match="vLLM exited with status 1"):
        process.start(ready_timeout_s=10)


@pytest.mark.integration
def test_it_serves_real_completions(vllm_node: VllmProcess) -> None:
    base = vllm_node.launch.base_url
    assert is_healthy(base)
    body = json.dumps(
        {"model": "tiny-llama", "prompt": "Hello", "max_tokens": 8, "ignore_eos": True}
    ).encode()
    request = urllib.request.Request(
        f"{base}/v1/completions", data=body, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.load(response)
    assert answer["usage"]["completion_tokens"] == 8
    assert tiny_launch().engine_args[:2] == ("--max-model-len", "1024")
