"""`python -m probes.agent`: run the node agent, or print one round of samples.

    python -m probes.agent --server https://advisor.example.org --token-file /etc/gca/token \\
        --config /etc/gca/agent.yaml
    python -m probes.agent --once --print          # one round as JSON, no server needed

Exit status: 0 after a clean stop (SIGTERM / SIGINT), 2 for a bad flag or config value.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

import httpx

from probes.agent import VERSION
from probes.agent.config import (
    PROXY_HASH_KEYS,
    AgentConfig,
    ConfigError,
    load_config,
    parse_proxy,
    vllm_target,
)
from probes.agent.controller_config import (
    ControllerSettings,
    build_task,
    load_controller_settings,
)
from probes.agent.journal import Journal
from probes.agent.pusher import Pusher
from probes.agent.runner import Agent, PeriodicTask
from probes.agent.samplers import Observations, Sampler
from probes.agent.samplers.dcgm import DcgmSampler, merge_gpu_samples
from probes.agent.samplers.host import HostSampler
from probes.agent.samplers.nvml import NvmlSampler
from probes.agent.samplers.vllm import VllmSampler
from probes.agent.spool import Spool

log = logging.getLogger("probes.agent")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m probes.agent",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help="YAML config file (flags override it)")
    parser.add_argument("--server", help="server base URL, e.g. https://advisor.example.org")
    parser.add_argument("--token-file", type=Path, help="file holding this node's agent token")
    parser.add_argument("--hostname", help="this node's name as registered (default: hostname)")
    parser.add_argument(
        "--vllm", "--vllm-url", action="append", metavar="URL", help="vLLM base URL (repeat)"
    )
    parser.add_argument("--dcgm-url", help="dcgm-exporter metrics URL")
    parser.add_argument("--no-nvml", action="store_true", help="do not sample NVML")
    parser.add_argument("--proxy-listen", metavar="HOST:PORT", help="recording proxy address")
    parser.add_argument(
        "--proxy-upstream", metavar="URL", help="vLLM URL behind the proxy (default: --vllm)"
    )
    parser.add_argument(
        "--no-prefix-hashes", action="store_true",
        help="the proxy records no prompt block hashes (no /tokenize calls)",
    )  # fmt: skip
    parser.add_argument(
        "--prefix-block-tokens", type=int, metavar="N",
        help="tokens per hashed prompt block (default: the engine's KV block size, else 16)",
    )  # fmt: skip
    parser.add_argument("--spool-dir", type=Path)
    parser.add_argument("--spool-max-bytes", type=int)
    parser.add_argument("--sample-interval", type=float, dest="sample_interval_s")
    parser.add_argument("--push-interval", type=float, dest="push_interval_s")
    parser.add_argument("--histogram-interval", type=float, dest="histogram_interval_s")
    parser.add_argument("--drain-timeout", type=float, dest="drain_timeout_s")
    parser.add_argument("--once", action="store_true", help="sample one round and exit")
    parser.add_argument("--print", action="store_true", help="with --once: print it as JSON")
    parser.add_argument("--stats-file", type=Path, help="write delivery counters here on exit")
    parser.add_argument(
        "--controller-config", type=Path,
        help="node controller YAML (local vLLM or Kubernetes): apply the server's desired config",
    )  # fmt: skip
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--version", action="version", version=f"probes.agent {VERSION}")
    return parser


def config_from_args(args: argparse.Namespace) -> AgentConfig:
    config = load_config(args.config)
    overrides: dict[str, object] = {
        "server": args.server,
        "token_file": args.token_file,
        "hostname": args.hostname,
        "dcgm_url": args.dcgm_url,
        "spool_dir": args.spool_dir,
        "spool_max_bytes": args.spool_max_bytes,
        "sample_interval_s": args.sample_interval_s,
        "push_interval_s": args.push_interval_s,
        "histogram_interval_s": args.histogram_interval_s,
        "drain_timeout_s": args.drain_timeout_s,
    }
    if args.no_nvml:
        overrides["nvml"] = False
    if args.vllm:
        overrides["vllm"] = tuple(vllm_target(url) for url in args.vllm)
    proxy = config.proxy
    # The YAML's hashing settings hold unless a flag says otherwise.
    hashing = {} if proxy is None else {key: getattr(proxy, key) for key in PROXY_HASH_KEYS}
    if args.no_prefix_hashes:
        hashing["prefix_hashes"] = False
    if args.prefix_block_tokens is not None:
        hashing["block_tokens"] = args.prefix_block_tokens
    if args.proxy_listen or args.proxy_upstream:
        upstream = args.proxy_upstream or (args.vllm[0] if args.vllm else None)
        if not (args.proxy_listen and upstream):
            raise ConfigError("--proxy-listen needs --proxy-upstream (or a --vllm URL)")
        overrides["proxy"] = parse_proxy(args.proxy_listen, upstream, **_set(hashing))
    elif proxy is not None:
        listen = f"{proxy.listen_host}:{proxy.listen_port}"
        overrides["proxy"] = parse_proxy(listen, proxy.upstream, **_set(hashing))
    elif args.no_prefix_hashes or args.prefix_block_tokens is not None:
        raise ConfigError("--no-prefix-hashes / --prefix-block-tokens: there is no proxy")
    return config.with_overrides(**overrides)


def _set(values: Mapping[str, object]) -> dict[str, object]:
    return {key: value for key, value in values.items() if value is not None}


def build_samplers(
    config: AgentConfig, client: httpx.Client, model_env: Mapping[str, str] | None = None
) -> list[Sampler]:
    """`model_env`: the supervised vLLM's environment (its Hugging Face cache), if known."""
    samplers: list[Sampler] = []
    if config.nvml:
        samplers.append(NvmlSampler())
    if config.dcgm_url:
        samplers.append(DcgmSampler(config.dcgm_url, client))
    for target in config.vllm:
        samplers.append(
            VllmSampler(target, client, config.hostname, config.histogram_interval_s, model_env)
        )
    return samplers


def supervised_env(settings: ControllerSettings | None) -> Mapping[str, str] | None:
    """The environment the local controller starts vLLM with (the agent's plus its `env`),
    so the model's config.json is looked for in the cache vLLM itself uses."""
    if settings is None or settings.local is None:
        return None
    env = settings.local.get("env") or {}
    if not isinstance(env, Mapping):
        return None
    return {**os.environ, **{str(k): str(v) for k, v in env.items()}}


def sample_once(config: AgentConfig, client: httpx.Client) -> Observations:
    """One round of every sampler plus host facts (what `--once --print` shows)."""
    now_s = time.time()
    combined = Observations()
    by_name: dict[str, list[dict[str, object]]] = {}
    samplers = build_samplers(config, client)
    for sampler in samplers:
        observations = sampler.sample(now_s)
        by_name[sampler.name] = observations.gpu_samples
        observations.gpu_samples = []
        combined.extend(observations)
        sampler.close()
    combined.gpu_samples = merge_gpu_samples(by_name.get("nvml", []), by_name.get("dcgm", []))
    combined.extend(HostSampler(config.hostname).sample(now_s))
    return combined


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        parser.error(str(exc))
    client = httpx.Client(timeout=config.http_timeout_s)
    if args.once:
        observations = sample_once(config, client)
        if args.print:
            json.dump(observations.to_json(), sys.stdout, indent=2, default=str)
            sys.stdout.write("\n")
        return 0
    if config.server is None or config.token_file is None:
        parser.error("--server and --token-file are required (or set them in --config)")
    settings = None
    if args.controller_config is not None:
        try:
            settings = load_controller_settings(args.controller_config)
        except ConfigError as exc:
            parser.error(str(exc))
    spool = Spool(config.spool_dir, config.spool_max_bytes)
    pusher = Pusher(spool, config.server, config.token_file, client)
    samplers = build_samplers(config, client, supervised_env(settings))
    agent = Agent(config, samplers, HostSampler(config.hostname), spool,
                  pusher, Journal(config.spool_dir / "journal"))  # fmt: skip
    if config.proxy is not None:
        agent.start_proxy()
    controller = None
    if settings is not None:
        try:
            controller = build_task(settings, server=config.server,
                                    token_file=config.token_file, client=client)  # fmt: skip
        except ConfigError as exc:
            parser.error(str(exc))
        agent.add_task(PeriodicTask("controller", settings.interval_s, controller.tick))
        controller.start()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: sealing, delivering the spool, then exiting", signum)
        agent.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("agent %s for %s pushing to %s", VERSION, config.hostname, config.server)
    agent.run()
    if controller is not None:
        controller.close()  # a local vLLM is the agent's child: it stops with the agent
    if args.stats_file is not None:
        agent.write_stats(args.stats_file)
    pending, _bytes = spool.pending()
    if pending:
        log.warning("%d batch(es) left in %s; they are sent at the next start", pending,
                    config.spool_dir)  # fmt: skip
    return 0
