"""Agent configuration: YAML and flags, errors that name the key."""

from pathlib import Path

import pytest

from probes.agent.cli import build_parser, config_from_args
from probes.agent.config import ConfigError, config_from_mapping, load_config


def test_it_reads_a_full_config_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "server: https://advisor.example.org\n"
        "token_file: /etc/gca/token\n"
        "hostname: gpu-7\n"
        "sample_interval_s: 2\n"
        "push_interval_s: 20\n"
        "dcgm_url: http://127.0.0.1:9400/metrics\n"
        "nvml: false\n"
        "vllm:\n"
        "  - url: http://127.0.0.1:8000/\n"
        "    served_name: llama\n"
        "    gpu_uuids: [GPU-1]\n"
        "  - http://127.0.0.1:8001\n"
        "proxy: {listen: '0.0.0.0:8002', upstream: 'http://127.0.0.1:8000'}\n"
    )
    config = load_config(path)
    assert config.server == "https://advisor.example.org"
    assert config.token_file == Path("/etc/gca/token")
    assert (config.hostname, config.sample_interval_s, config.push_interval_s) == ("gpu-7", 2, 20)
    assert config.nvml is False
    assert [t.url for t in config.vllm] == ["http://127.0.0.1:8000", "http://127.0.0.1:8001"]
    assert config.vllm[0].served_name == "llama"
    assert config.vllm[0].gpu_uuids == ("GPU-1",)
    assert config.proxy is not None
    assert (config.proxy.listen_host, config.proxy.listen_port) == ("0.0.0.0", 8002)


PROXY = {"listen": "127.0.0.1:8002", "upstream": "http://127.0.0.1:8000"}


def test_prefix_hashes_are_on_by_default_at_the_engines_block_size() -> None:
    default = config_from_mapping({"proxy": PROXY}).proxy
    assert default is not None
    assert (default.prefix_hashes, default.block_tokens) == (True, None)
    assert (default.max_prompt_bytes, default.hash_queue) == (512 * 1024, 64)
    tuned = config_from_mapping({"proxy": {**PROXY, "prefix_hashes": False, "block_tokens": 128,
                                           "max_prompt_bytes": 4096, "hash_queue": 8}})  # fmt: skip
    assert tuned.proxy is not None
    assert (tuned.proxy.prefix_hashes, tuned.proxy.block_tokens) == (False, 128)
    assert (tuned.proxy.max_prompt_bytes, tuned.proxy.hash_queue) == (4096, 8)


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"server": "advisor.example.org"}, "server:"),
        ({"sample_interval_s": 0}, "sample_interval_s:"),
        ({"sample_interval_s": "fast"}, "sample_interval_s:"),
        ({"push_interval_s": 0.5, "sample_interval_s": 1}, "push_interval_s:"),
        ({"spool_max_bytes": 10}, "spool_max_bytes:"),
        ({"nvml": "yes"}, "nvml:"),
        ({"vllm": [{"url": "ftp://x"}]}, "vllm[0].url:"),
        ({"vllm": [{"url": "http://x", "port": 1}]}, "vllm[0].port:"),
        ({"proxy": {"listen": "8002", "upstream": "http://x"}}, "proxy.listen:"),
        ({"colour": "blue"}, "colour:"),
        ({"proxy": {**PROXY, "prefix_hashes": "yes"}}, "proxy.prefix_hashes:"),
        ({"proxy": {**PROXY, "block_tokens": 0}}, "proxy.block_tokens:"),
        ({"proxy": {**PROXY, "max_prompt_bytes": 1.5}}, "proxy.max_prompt_bytes:"),
        ({"proxy": {**PROXY, "hash_queue": True}}, "proxy.hash_queue:"),
        ({"proxy": {**PROXY, "hash_size": 4}}, "proxy.hash_size:"),
    ],
)
def test_it_names_the_bad_key(data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(data)
    assert str(caught.value).startswith(key)


def test_flags_override_the_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("server: http://a.example\npush_interval_s: 30\n")
    args = build_parser().parse_args(
        ["--config", str(path), "--server", "http://b.example", "--vllm", "http://127.0.0.1:9",
         "--no-nvml", "--proxy-listen", "127.0.0.1:0", "--proxy-upstream", "http://127.0.0.1:9"]
    )  # fmt: skip
    config = config_from_args(args)
    assert config.server == "http://b.example"
    assert config.push_interval_s == 30
    assert config.nvml is False
    assert config.vllm[0].url == "http://127.0.0.1:9"


def test_the_proxy_defaults_to_the_vllm_server_it_samples() -> None:
    args = build_parser().parse_args(
        ["--vllm-url", "http://vllm:8001", "--proxy-listen", "0.0.0.0:8002"]
    )
    config = config_from_args(args)
    assert config.proxy is not None
    assert config.proxy.upstream == "http://vllm:8001"
    with pytest.raises(ConfigError, match="--proxy-listen needs --proxy-upstream"):
        config_from_args(build_parser().parse_args(["--proxy-listen", "0.0.0.0:8002"]))


def test_it_says_when_the_config_file_is_not_yaml(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("server: [unclosed\n")
    with pytest.raises(ConfigError, match=r"--config: .* is not valid YAML"):
        load_config(path)


def test_hashing_flags_keep_the_files_other_proxy_settings(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "proxy: {listen: '0.0.0.0:8002', upstream: 'http://127.0.0.1:8000', hash_queue: 8}\n"
    )
    flags = ["--config", str(path), "--no-prefix-hashes", "--prefix-block-tokens", "128"]
    proxy = config_from_args(build_parser().parse_args(flags)).proxy
    assert proxy is not None
    assert (proxy.listen_host, proxy.listen_port, proxy.upstream) == (
        "0.0.0.0", 8002, "http://127.0.0.1:8000",
    )  # fmt: skip
    assert (proxy.prefix_hashes, proxy.block_tokens, proxy.hash_queue) == (False, 128, 8)
    moved_flags = ["--config", str(path), "--proxy-listen", "127.0.0.1:9000",
                   "--proxy-upstream", "http://vllm:8000"]  # fmt: skip
    moved = config_from_args(build_parser().parse_args(moved_flags)).proxy
    assert moved is not None
    assert (moved.listen_port, moved.prefix_hashes, moved.hash_queue) == (9000, True, 8)
    bad_flags = ["--config", str(path), "--prefix-block-tokens", "0"]
    with pytest.raises(ConfigError, match=r"^proxy\.block_tokens: must be an integer 1-"):
        config_from_args(build_parser().parse_args(bad_flags))
    with pytest.raises(ConfigError, match="there is no proxy"):
        config_from_args(build_parser().parse_args(["--no-prefix-hashes"]))
