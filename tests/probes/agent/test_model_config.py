"""The agent finds the served model's config.json and sends it with the deployment once."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import httpx
import pytest

from probes.agent import model_config
from probes.agent.batch import BatchBuilder
from probes.agent.cli import supervised_env
from probes.agent.config import VllmTarget
from probes.agent.controller_config import controller_settings
from probes.agent.model_config import ConfigNotFound, ConfigWatch, config_read, hub_cache_dir
from probes.agent.samplers import Observations
from probes.agent.samplers.vllm import VllmSampler
from probes.ingest import schema
from tests.probes.agent.stub_http import serving, text

DATA = Path(__file__).parent / "data"
IDLE = (DATA / "vllm-0.32-idle.txt").read_text()
CONFIG = {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32}


def _write(path: Path, config: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config))
    return path


def _snapshot(hub: Path, commit: str, config: object, mtime: float) -> Path:
    path = _write(hub / "models--acme--chat-9000" / "snapshots" / commit / "config.json", config)
    os.utime(path, (mtime, mtime))
    return path


def test_it_reads_config_json_in_a_model_directory(tmp_path: Path) -> None:
    path = _write(tmp_path / "models" / "chat" / "config.json", CONFIG)
    found = config_read(str(tmp_path / "models" / "chat"), {})
    assert (found.config, found.path) == (CONFIG, path)


def test_it_reads_the_snapshot_refs_main_names_in_the_hf_cache(tmp_path: Path) -> None:
    hub = tmp_path / "hf" / "hub"
    main = _snapshot(hub, "aaa111", {**CONFIG, "rev": "main"}, mtime=1_000)
    _snapshot(hub, "bbb222", {**CONFIG, "rev": "newer"}, mtime=2_000)
    (hub / "models--acme--chat-9000" / "refs").mkdir()
    (hub / "models--acme--chat-9000" / "refs" / "main").write_text("aaa111\n")
    found = config_read("acme/chat-9000", {"HF_HOME": str(tmp_path / "hf")})
    assert (found.path, found.config["rev"]) == (main, "main")


def test_it_takes_the_newest_snapshot_when_no_ref_names_one(tmp_path: Path) -> None:
    hub = tmp_path / "cache"
    _snapshot(hub, "aaa111", {**CONFIG, "rev": "old"}, mtime=1_000)
    newest = _snapshot(hub, "bbb222", {**CONFIG, "rev": "new"}, mtime=2_000)
    found = config_read("acme/chat-9000", {"HF_HUB_CACHE": str(hub), "HF_HOME": "/nowhere"})
    assert (found.path, found.config["rev"]) == (newest, "new")


def test_it_finds_the_hub_cache_as_huggingface_hub_does() -> None:
    assert hub_cache_dir({"HF_HUB_CACHE": "/a", "HF_HOME": "/b"}) == Path("/a")
    assert hub_cache_dir({"HF_HOME": "/b"}) == Path("/b/hub")
    assert hub_cache_dir({"XDG_CACHE_HOME": "/x"}) == Path("/x/huggingface/hub")
    assert hub_cache_dir({"HOME": "/home/vllm"}) == Path("/home/vllm/.cache/huggingface/hub")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        # {"pad": "x..."}: 262,144 x + 11 bytes around them
        ({"pad": "x" * (256 * 1024)}, "is 262155 bytes; at most 262144 are sent"),
        ({"model_type": "a\x00b"}, "a NUL character; the server would refuse it"),
        ({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}},
         "nested more than 8 levels deep; the server would refuse it"),
        (["a", "list"], "holds no JSON object"),
    ],
)  # fmt: skip
def test_it_does_not_send_a_config_the_server_would_refuse(
    tmp_path: Path, config: object, message: str
) -> None:
    path = _write(tmp_path / "config.json", config)
    with pytest.raises(ConfigNotFound) as caught:
        config_read(str(tmp_path), {})
    assert str(caught.value).endswith(message)
    assert str(path) in str(caught.value)


def test_it_says_where_it_looked_when_there_is_no_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigNotFound) as caught:
        config_read("acme/chat-9000", {"HF_HUB_CACHE": str(tmp_path)})
    assert str(caught.value) == (
        f"no config.json for 'acme/chat-9000' in the Hugging Face cache "
        f"{tmp_path / 'models--acme--chat-9000'}"
    )


def test_its_limits_are_the_servers() -> None:
    assert model_config.MAX_CONFIG_BYTES == schema.MAX_HF_CONFIG_BYTES
    assert model_config.MAX_CONFIG_DEPTH == schema.MAX_HF_CONFIG_DEPTH
    assert model_config.MAX_CONFIG_VALUES == schema.MAX_HF_CONFIG_VALUES


def test_it_sends_a_config_once_and_again_only_when_it_changes(tmp_path: Path) -> None:
    path = _write(tmp_path / "config.json", CONFIG)
    watch = ConfigWatch({}, recheck_s=300.0)
    assert watch.check("chat", str(tmp_path), 0.0) == (CONFIG, None)
    assert watch.check("chat", str(tmp_path), 1.0) == (None, None)  # not read again yet
    assert watch.check("chat", str(tmp_path), 301.0) == (None, None)  # read: unchanged
    _write(path, {**CONFIG, "num_hidden_layers": 40})
    assert watch.check("chat", str(tmp_path), 400.0) == (None, None)  # before the recheck
    assert watch.check("chat", str(tmp_path), 602.0) == ({**CONFIG, "num_hidden_layers": 40}, None)


def _sampler(url: str, env: dict[str, str]) -> VllmSampler:
    return VllmSampler(VllmTarget(url=url), httpx.Client(), "node-1", 10.0, model_env=env)


def test_the_vllm_sampler_sends_the_config_with_the_deployment_once(tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    _snapshot(hub, "aaa111", CONFIG, mtime=1_000)
    models = json.dumps({"data": [{"id": "chat", "root": "acme/chat-9000"}]})
    with serving(
        {
            ("GET", "/metrics"): text(IDLE.replace("tiny-llama", "chat")),
            ("GET", "/v1/models"): text(models, content_type="application/json"),
        }
    ) as url:
        sampler = _sampler(url, {"HF_HUB_CACHE": str(hub)})
        first = sampler.sample(100.0)
        second = sampler.sample(101.0)
    assert first.deployments == [
        {"served_name": "chat", "model_id": "acme/chat-9000", "hf_config": CONFIG}
    ]
    assert second.deployments == [{"served_name": "chat", "model_id": "acme/chat-9000"}]
    assert first.notes == second.notes == []


def test_the_vllm_sampler_says_once_that_it_found_no_config(tmp_path: Path) -> None:
    models = json.dumps({"data": [{"id": "chat", "root": "acme/chat-9000"}]})
    with serving(
        {
            ("GET", "/metrics"): text(IDLE.replace("tiny-llama", "chat")),
            ("GET", "/v1/models"): text(models, content_type="application/json"),
        }
    ) as url:
        sampler = _sampler(url, {"HF_HUB_CACHE": str(tmp_path)})
        first = sampler.sample(100.0)
        later = sampler.sample(500.0)  # looked again after CONFIG_RECHECK_S: same answer
    assert first.notes == [
        f"model 'chat': no config.json for 'acme/chat-9000' in the Hugging Face cache "
        f"{tmp_path / 'models--acme--chat-9000'}; the server cannot model it unless its "
        "config.json is uploaded on the deployment's page"
    ]
    assert later.notes == []


def _sealed_deployments(builder: BatchBuilder) -> list[dict[str, object]]:
    sealed = builder.seal({"hostname": "node-1"})
    return list(json.loads(gzip.decompress(sealed.body_gz))["deployments"])


def test_a_config_rides_along_in_one_batch_only() -> None:
    builder = BatchBuilder()
    row = {"served_name": "chat", "model_id": "acme/chat-9000"}
    builder.add(Observations(deployments=[{**row, "hf_config": CONFIG}]))
    builder.add(Observations(deployments=[row]))  # the next round: no config
    assert _sealed_deployments(builder) == [{**row, "hf_config": CONFIG}]
    builder.add(Observations(deployments=[row]))
    assert _sealed_deployments(builder) == [row]
    assert _sealed_deployments(builder) == [row]  # inventory only


def test_the_agent_looks_in_the_cache_of_the_vllm_it_starts() -> None:
    settings = controller_settings(
        {"local": {"python": "python", "model": "acme/chat-9000", "served_name": "chat",
                   "port": 8000, "env": {"HF_HOME": "/srv/hf"}}}
    )  # fmt: skip
    env = supervised_env(settings)
    assert env is not None
    assert hub_cache_dir(env) == Path("/srv/hf/hub")
    assert supervised_env(None) is None


def test_a_checkpoint_is_present_with_a_config_json_here_or_in_the_hub_cache(
    tmp_path: Path,
) -> None:
    snapshot = tmp_path / "hub" / "models--org--model-AWQ" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    env = {"HF_HUB_CACHE": str(tmp_path / "hub")}

    assert model_config.checkpoint_missing("org/model-AWQ", env) is None
    assert model_config.checkpoint_missing(str(snapshot), {}) is None
    assert model_config.checkpoint_missing("org/model-GPTQ", env) == (
        "checkpoint 'org/model-GPTQ' is not on this node: no config.json for 'org/model-GPTQ' "
        f"in the Hugging Face cache {tmp_path / 'hub' / 'models--org--model-GPTQ'}"
    )
    assert model_config.checkpoint_missing(str(tmp_path), env) == (
        f"checkpoint '{tmp_path}' is not on this node: no config.json in '{tmp_path}' (not a "
        "directory holding one)"
    )
