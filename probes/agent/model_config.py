"""Find and read the config.json of the model a vLLM server serves, to send with its deployment.

The server models a deployment from this file (architecture, experts, attention, weight
format), so nobody types a path. vLLM's `/v1/models` gives the model's `root`: what `--model`
named. A local directory holding config.json is read directly; a Hugging Face id
(`org/name`) is looked up in the Hugging Face cache of the server's environment, the way
huggingface_hub lays it out:

    $HF_HUB_CACHE (or $HF_HOME/hub, or ~/.cache/huggingface/hub)
        models--org--name/refs/main            -> the commit vLLM loaded by default
        models--org--name/snapshots/<commit>/config.json

(the commit `refs/main` names, else the newest snapshot holding a config.json). The file is
capped and checked against the server's limits (`probes.ingest.schema`: MAX_HF_CONFIG_*)
before it is sent: a config the server would refuse would take the whole batch with it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The server's limits on a deployment's `hf_config` (`probes.ingest.schema`, checked equal
# by the tests): bytes as compact JSON, nesting levels, values.
MAX_CONFIG_BYTES = 256 * 1024
MAX_CONFIG_DEPTH = 8
MAX_CONFIG_VALUES = 32_768


@dataclass(frozen=True)
class FoundConfig:
    """A parsed config.json and where it was read; `digest` tells a changed file apart."""

    config: dict[str, Any]
    path: Path
    digest: str


class ConfigNotFound(Exception):
    """No usable config.json; the message says where the agent looked or what is wrong."""


def hub_cache_dir(env: Mapping[str, str]) -> Path:
    """The Hugging Face hub cache of a process with environment `env` (huggingface_hub's
    order: HF_HUB_CACHE, the legacy HUGGINGFACE_HUB_CACHE, HF_HOME/hub, XDG_CACHE_HOME)."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(name):
            return Path(env[name]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(base).expanduser() / "huggingface" / "hub"


def config_path(model_id: str, env: Mapping[str, str]) -> Path:
    """Where the config.json of `model_id` (a directory, or a Hugging Face id) lies."""
    local = Path(model_id).expanduser()
    if (local / "config.json").is_file():
        return local / "config.json"
    parts = model_id.split("/")
    if len(parts) != 2 or not all(parts) or model_id.startswith((".", "~")):
        raise ConfigNotFound(f"no config.json in {model_id!r} (not a directory holding one)")
    repo = hub_cache_dir(env) / f"models--{parts[0]}--{parts[1]}"
    snapshots = repo / "snapshots"
    try:
        commit = (repo / "refs" / "main").read_text().strip()
    except OSError:
        commit = ""
    if commit and (snapshots / commit / "config.json").is_file():
        return snapshots / commit / "config.json"
    found = sorted(
        (path for path in snapshots.glob("*/config.json") if path.is_file()),
        key=lambda path: path.stat().st_mtime,
    )
    if not found:
        raise ConfigNotFound(f"no config.json for {model_id!r} in the Hugging Face cache {repo}")
    return found[-1]


def checkpoint_missing(model_id: str, env: Mapping[str, str]) -> str | None:
    """Why `model_id` cannot be loaded on this machine, or None when its config.json is here.

    What "present" means before anything is stopped for it: a local directory holding
    config.json, or a Hugging Face id with a snapshot holding one in the cache of a process
    with environment `env` (`config_path`). The weights themselves are not checked.
    """
    try:
        config_path(model_id, env)
    except ConfigNotFound as exc:
        return f"checkpoint {model_id!r} is not on this node: {exc}"
    return None


def config_read(model_id: str, env: Mapping[str, str]) -> FoundConfig:
    """The parsed config.json of `model_id`; ConfigNotFound says why there is none."""
    path = config_path(model_id, env)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigNotFound(f"{path} is {size} bytes; at most {MAX_CONFIG_BYTES} are sent")
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigNotFound(f"cannot read {path}: {exc}") from exc
    try:
        config = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ConfigNotFound(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ConfigNotFound(f"{path} holds no JSON object")
    compact = json.dumps(config, separators=(",", ":"), sort_keys=True, allow_nan=False)
    problem = _problem(config)
    if problem is not None or len(compact.encode()) > MAX_CONFIG_BYTES:
        raise ConfigNotFound(
            f"{path}: {problem or 'too large as JSON'}; the server would refuse it"
        )
    return FoundConfig(config, path, hashlib.sha256(compact.encode()).hexdigest())


def _problem(value: Any) -> str | None:
    """What the server's check (`probes.ingest.schema._json_problem`) would refuse, if any."""
    todo: list[tuple[Any, int]] = [(value, 1)]
    seen = 0
    while todo:
        item, depth = todo.pop()
        seen += 1
        if seen > MAX_CONFIG_VALUES:
            return f"more than {MAX_CONFIG_VALUES} values"
        if isinstance(item, str) and "\x00" in item:
            return "a NUL character"
        if isinstance(item, dict | list):
            if depth > MAX_CONFIG_DEPTH:
                return f"nested more than {MAX_CONFIG_DEPTH} levels deep"
            if isinstance(item, dict):
                if any("\x00" in key for key in item):
                    return "a NUL character in a key"
                todo.extend((child, depth + 1) for child in item.values())
            else:
                todo.extend((child, depth + 1) for child in item)
    return None


def process_env() -> Mapping[str, str]:
    """The agent's own environment: where a scraped vLLM's cache is looked for by default."""
    return os.environ


# How often a served model's config.json is read again to notice a changed one (a few KiB).
CONFIG_RECHECK_S = 300.0


class ConfigWatch:
    """Which config.json each served model has had sent: a config rides along once per agent
    run, and again only when the file changes (checked every CONFIG_RECHECK_S)."""

    def __init__(self, env: Mapping[str, str], recheck_s: float = CONFIG_RECHECK_S) -> None:
        self.env = env
        self.recheck_s = recheck_s
        self._sent: dict[str, str] = {}  # served name -> digest of the config sent
        self._checked: dict[str, float] = {}

    def check(
        self, served_name: str, model_id: str, now_s: float
    ) -> tuple[dict[str, Any] | None, str | None]:
        """(the config to send now, or None; a note when there is no usable config, or None).

        Nothing is read between checks: the note and the config of a check stand until the
        next one.
        """
        last = self._checked.get(served_name)
        if last is not None and now_s - last < self.recheck_s:
            return None, None
        self._checked[served_name] = now_s
        try:
            found = config_read(model_id, self.env)
        except ConfigNotFound as exc:
            return None, str(exc)
        if self._sent.get(served_name) == found.digest:
            return None, None
        self._sent[served_name] = found.digest
        return found.config, None
