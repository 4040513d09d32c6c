"""Agent configuration: a YAML file, overridden by command-line flags; errors name the key.

Example (`agent.yaml`)::

    server: https://advisor.example.org
    token_file: /etc/gca-agent/token
    hostname: gpu-node-1            # default: this machine's host name
    sample_interval_s: 1
    push_interval_s: 10
    histogram_interval_s: 10        # how often vLLM histograms ride along an engine sample
    spool_dir: /var/lib/gca-agent/spool
    spool_max_bytes: 268435456      # when full, the oldest batches are dropped (and counted)
    nvml: true
    dcgm_url: http://127.0.0.1:9400/metrics
    vllm:
      - url: http://127.0.0.1:8000
        served_name: llama-3-8b     # optional: only this model's series
        gpu_uuids: [GPU-5d3b...]    # optional: the GPUs this server uses
    proxy:                          # optional recording reverse proxy in front of vLLM
      listen: 0.0.0.0:8002
      upstream: http://127.0.0.1:8000
      prefix_hashes: true           # prompt block hashes (never text) for prefix-cache what-ifs
      block_tokens: 16              # default: the engine's KV block size (its /metrics), else 16
      max_prompt_bytes: 524288      # larger request bodies are recorded without hashes
      hash_queue: 64                # requests waiting for /tokenize; beyond, no hashes (counted)
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml


class ConfigError(ValueError):
    """A configuration value is invalid; the message starts with the key."""


@dataclass(frozen=True)
class VllmTarget:
    url: str
    served_name: str | None = None
    gpu_uuids: tuple[str, ...] = ()


# A request is at most 64 MiB (the proxy's limit); a prompt block at most a model's context.
MAX_PROMPT_BYTES = 64 * 1024 * 1024
MAX_BLOCK_TOKENS = 1 << 20
MAX_HASH_QUEUE = 100_000


@dataclass(frozen=True)
class ProxyConfig:
    listen_host: str
    listen_port: int
    upstream: str
    # On by default: without hashes a deployment's prefix reuse is unknown to the advisor,
    # and the cost is one /tokenize call per request, made after the response was relayed.
    prefix_hashes: bool = True
    block_tokens: int | None = None  # None: the engine's block size, else 16
    max_prompt_bytes: int = 512 * 1024
    hash_queue: int = 64


@dataclass(frozen=True)
class AgentConfig:
    server: str | None = None
    token_file: Path | None = None
    hostname: str = field(default_factory=socket.gethostname)
    sample_interval_s: float = 1.0
    push_interval_s: float = 10.0
    histogram_interval_s: float = 10.0
    host_interval_s: float = 60.0
    spool_dir: Path = Path("var/agent-spool")
    spool_max_bytes: int = 256 * 1024 * 1024
    nvml: bool = True
    dcgm_url: str | None = None
    vllm: tuple[VllmTarget, ...] = ()
    proxy: ProxyConfig | None = None
    http_timeout_s: float = 10.0
    # On shutdown, how long the pusher may keep delivering the spool before exiting.
    drain_timeout_s: float = 10.0

    def with_overrides(self, **overrides: Any) -> AgentConfig:
        """A copy with the non-None overrides applied, validated again."""
        return _validated(replace(self, **{k: v for k, v in overrides.items() if v is not None}))


def load_config(path: Path | None) -> AgentConfig:
    """Read a YAML config file (or the defaults when `path` is None)."""
    if path is None:
        return _validated(AgentConfig())
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config: {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"--config: {path} must hold a mapping of keys to values")
    return config_from_mapping(data)


def config_from_mapping(data: Mapping[str, Any]) -> AgentConfig:
    known = {
        "server", "token_file", "hostname", "sample_interval_s", "push_interval_s",
        "histogram_interval_s", "host_interval_s", "spool_dir", "spool_max_bytes", "nvml",
        "dcgm_url", "vllm", "proxy", "http_timeout_s", "drain_timeout_s",
    }  # fmt: skip
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown key (known: {', '.join(sorted(known))})")
    values: dict[str, Any] = {}
    for key in ("server", "hostname", "dcgm_url"):
        if key in data:
            values[key] = _string(key, data[key])
    for key in ("token_file", "spool_dir"):
        if key in data:
            values[key] = Path(_string(key, data[key]))
    for key in (
        "sample_interval_s", "push_interval_s", "histogram_interval_s", "host_interval_s",
        "http_timeout_s", "drain_timeout_s",
    ):  # fmt: skip
        if key in data:
            values[key] = _number(key, data[key])
    if "spool_max_bytes" in data:
        values["spool_max_bytes"] = int(_number("spool_max_bytes", data["spool_max_bytes"]))
    if "nvml" in data:
        if not isinstance(data["nvml"], bool):
            raise ConfigError("nvml: must be true or false")
        values["nvml"] = data["nvml"]
    if "vllm" in data:
        values["vllm"] = _vllm_targets(data["vllm"])
    if data.get("proxy") is not None:
        proxy = data["proxy"]
        if not isinstance(proxy, dict):
            raise ConfigError("proxy: must be a mapping with listen and upstream")
        unknown = sorted(set(proxy) - {"listen", "upstream", *PROXY_HASH_KEYS})
        if unknown:
            raise ConfigError(f"proxy.{unknown[0]}: unknown key")
        values["proxy"] = parse_proxy(
            _string("proxy.listen", proxy.get("listen")),
            _string("proxy.upstream", proxy.get("upstream")),
            **{key: proxy[key] for key in PROXY_HASH_KEYS if proxy.get(key) is not None},
        )
    return _validated(AgentConfig(**values))


PROXY_HASH_KEYS = ("prefix_hashes", "block_tokens", "max_prompt_bytes", "hash_queue")


def parse_proxy(listen: str, upstream: str, **hashing: Any) -> ProxyConfig:
    """`hashing`: the optional PROXY_HASH_KEYS, as read from YAML (validated here)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"proxy.listen: expected HOST:PORT, got {listen!r}")
    _url("proxy.upstream", upstream)
    if "prefix_hashes" in hashing and not isinstance(hashing["prefix_hashes"], bool):
        raise ConfigError("proxy.prefix_hashes: must be true or false")
    limits = {"block_tokens": MAX_BLOCK_TOKENS, "max_prompt_bytes": MAX_PROMPT_BYTES,
              "hash_queue": MAX_HASH_QUEUE}  # fmt: skip
    for key, most in limits.items():
        if key in hashing:
            value = hashing[key]
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
                raise ConfigError(f"proxy.{key}: must be an integer 1-{most}, got {value!r}")
    return ProxyConfig(
        listen_host=host or "127.0.0.1", listen_port=int(port), upstream=upstream, **hashing
    )


def vllm_target(url: str) -> VllmTarget:
    _url("vllm.url", url)
    return VllmTarget(url=url.rstrip("/"))


def _vllm_targets(raw: Any) -> tuple[VllmTarget, ...]:
    if not isinstance(raw, list):
        raise ConfigError("vllm: must be a list of {url, served_name?, gpu_uuids?}")
    targets = []
    for i, item in enumerate(raw):
        if isinstance(item, str):
            item = {"url": item}
        if not isinstance(item, dict):
            raise ConfigError(f"vllm[{i}]: must be a URL or a mapping with url")
        unknown = sorted(set(item) - {"url", "served_name", "gpu_uuids"})
        if unknown:
            raise ConfigError(f"vllm[{i}].{unknown[0]}: unknown key")
        url = _string(f"vllm[{i}].url", item.get("url"))
        _url(f"vllm[{i}].url", url)
        uuids = item.get("gpu_uuids") or []
        if not isinstance(uuids, list) or not all(isinstance(u, str) for u in uuids):
            raise ConfigError(f"vllm[{i}].gpu_uuids: must be a list of GPU UUIDs")
        name = item.get("served_name")
        targets.append(
            VllmTarget(
                url=url.rstrip("/"),
                served_name=_string(f"vllm[{i}].served_name", name) if name else None,
                gpu_uuids=tuple(uuids),
            )
        )
    return tuple(targets)


def _validated(config: AgentConfig) -> AgentConfig:
    if config.server is not None:
        _url("server", config.server)
    for key in ("sample_interval_s", "push_interval_s", "histogram_interval_s", "host_interval_s"):
        value = getattr(config, key)
        if not 0.05 <= value <= 3600:
            raise ConfigError(f"{key}: must be between 0.05 and 3600 seconds, got {value}")
    if config.push_interval_s < config.sample_interval_s:
        raise ConfigError("push_interval_s: must not be shorter than sample_interval_s")
    if config.spool_max_bytes < 1024 * 1024:
        raise ConfigError(f"spool_max_bytes: must be at least 1 MiB, got {config.spool_max_bytes}")
    if not config.hostname or len(config.hostname) > 253:
        raise ConfigError("hostname: 1-253 characters")
    if config.dcgm_url is not None:
        _url("dcgm_url", config.dcgm_url)
    return config


def _url(key: str, value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{key}: expected an http(s):// URL, got {value!r}")


def _string(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: must be a non-empty string")
    return value


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key}: must be a number, got {value!r}")
    return float(value)
