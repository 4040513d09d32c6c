"""The node controller's YAML file (`--controller-config`): which controller, and its settings.

Local vLLM process (the agent starts and supervises it)::

    interval_s: 2                 # how often to pull the desired config and report
    restart_delay_s: 5            # wait before restarting a vLLM that exited on its own
    state_file: /var/lib/gca-agent/controller.json
    local:
      python: /opt/vllm/bin/python
      model: /models/llama-3-8b
      served_name: llama-3-8b
      host: 127.0.0.1
      port: 8000
      base_args: [--max-model-len, "8192"]   # always passed; a change adds engine args
      env: {VLLM_CPU_KVCACHE_SPACE: "1"}
      log_dir: /var/log/gca-agent/vllm
      ready_timeout_s: 600
      smoke: true                 # a tiny completion before a config counts as applied

Kubernetes Deployment (the agent patches its container command)::

    kubernetes:
      namespace: inference
      deployment: llama-3-8b
      container: vllm
      base_command: [python3, -m, vllm.entrypoints.openai.api_server, --port, "8000"]
      model: meta-llama/Meta-Llama-3-8B-Instruct
      served_name: llama-3-8b
      service_url: http://llama-3-8b.inference.svc:8000   # smoke, probes, /metrics
      in_cluster: true            # or kubeconfig: /path (or api_url + token_file)
      timeout_s: 900

Errors raise `ConfigError` naming the key, like the agent's own config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from probes.agent.config import ConfigError
from probes.agent.controller import ControllerTask, HttpDesiredSource, NodeController
from probes.agent.controller_local import LocalController
from probes.agent.vllm_process import VllmLaunch

LOCAL_KEYS = frozenset({
    "python", "model", "served_name", "host", "port", "base_args", "env", "log_dir",
    "ready_timeout_s", "smoke",
})  # fmt: skip
KUBERNETES_KEYS = frozenset({
    "namespace", "deployment", "container", "base_command", "model", "served_name",
    "model_flag", "service_url", "in_cluster", "kubeconfig", "api_url", "token_file",
    "timeout_s", "smoke",
})  # fmt: skip
TOP_KEYS = frozenset({"interval_s", "restart_delay_s", "state_file", "local", "kubernetes"})


@dataclass(frozen=True)
class ControllerSettings:
    interval_s: float
    restart_delay_s: float
    state_file: Path | None
    local: Mapping[str, Any] | None
    kubernetes: Mapping[str, Any] | None


def load_controller_settings(path: Path) -> ControllerSettings:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"--controller-config: cannot read {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"--controller-config: {path} is not valid YAML: {exc}") from exc
    return controller_settings(data)


def controller_settings(data: Any) -> ControllerSettings:
    if not isinstance(data, Mapping):
        raise ConfigError("controller: expected a mapping of keys to values")
    _known(data, TOP_KEYS, "controller")
    kinds = [kind for kind in ("local", "kubernetes") if data.get(kind) is not None]
    if len(kinds) != 1:
        raise ConfigError("controller: set exactly one of local or kubernetes")
    section = data[kinds[0]]
    if not isinstance(section, Mapping):
        raise ConfigError(f"{kinds[0]}: expected a mapping")
    _known(section, LOCAL_KEYS if kinds[0] == "local" else KUBERNETES_KEYS, kinds[0])
    required = (
        ("python", "model", "served_name", "port")
        if kinds[0] == "local"
        else ("namespace", "deployment", "container", "base_command", "model", "served_name")
    )
    for key in required:
        if section.get(key) in (None, ""):
            raise ConfigError(f"{kinds[0]}.{key}: required")
    interval = _number(data.get("interval_s", 5.0), "interval_s", 0.2, 600)
    restart_delay = _number(data.get("restart_delay_s", 5.0), "restart_delay_s", 0, 600)
    state_file = data.get("state_file")
    if state_file is not None and not isinstance(state_file, str):
        raise ConfigError("state_file: expected a path")
    return ControllerSettings(
        interval_s=interval,
        restart_delay_s=restart_delay,
        state_file=Path(state_file) if state_file else None,
        local=section if kinds[0] == "local" else None,
        kubernetes=section if kinds[0] == "kubernetes" else None,
    )


def build_controller(settings: ControllerSettings, client: httpx.Client) -> NodeController:
    if settings.local is not None:
        return _local(settings.local, client)
    assert settings.kubernetes is not None
    return _kubernetes(settings.kubernetes, client)


def build_task(
    settings: ControllerSettings, *, server: str, token_file: Path, client: httpx.Client
) -> ControllerTask:
    return ControllerTask(
        build_controller(settings, client),
        HttpDesiredSource(server, token_file, client),
        client=client,
        state_path=settings.state_file,
        restart_delay_s=settings.restart_delay_s,
    )


def _local(section: Mapping[str, Any], client: httpx.Client) -> LocalController:
    port = section["port"]
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"local.port: expected 1..65535, got {port!r}")
    env = section.get("env") or {}
    if not isinstance(env, Mapping) or not all(isinstance(v, str) for v in env.values()):
        raise ConfigError("local.env: expected a mapping of names to strings")
    launch = VllmLaunch(
        python=_string(section["python"], "local.python"),
        model=_string(section["model"], "local.model"),
        served_name=_string(section["served_name"], "local.served_name"),
        port=port,
        host=_string(section.get("host", "127.0.0.1"), "local.host"),
        engine_args=_strings(section.get("base_args", []), "local.base_args"),
        env=dict(env),
    )
    return LocalController(
        launch,
        log_dir=Path(_string(section.get("log_dir", "var/agent-vllm"), "local.log_dir")),
        client=client,
        ready_timeout_s=_number(
            section.get("ready_timeout_s", 600), "local.ready_timeout_s", 5, 7200
        ),
        smoke=_flag(section.get("smoke", True), "local.smoke"),
    )


def _kubernetes(section: Mapping[str, Any], client: httpx.Client) -> NodeController:
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    from probes.agent.controller_kubernetes import KubernetesController

    if section.get("in_cluster"):
        configuration = k8s.Configuration()
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        api_client = k8s.ApiClient(configuration)
    elif section.get("kubeconfig"):
        api_client = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=_string(section["kubeconfig"], "kubernetes.kubeconfig")
        )
    elif section.get("api_url"):
        configuration = k8s.Configuration(host=_string(section["api_url"], "kubernetes.api_url"))
        token_file = section.get("token_file")
        if token_file:
            token = Path(_string(token_file, "kubernetes.token_file")).read_text().strip()
            configuration.api_key = {"BearerToken": f"Bearer {token}"}
        api_client = k8s.ApiClient(configuration)
    else:
        raise ConfigError("kubernetes: set in_cluster, kubeconfig or api_url")
    return KubernetesController(
        api_client,
        namespace=_string(section["namespace"], "kubernetes.namespace"),
        deployment=_string(section["deployment"], "kubernetes.deployment"),
        container=_string(section["container"], "kubernetes.container"),
        base_command=_strings(section["base_command"], "kubernetes.base_command"),
        model=_string(section["model"], "kubernetes.model"),
        served_name=_string(section["served_name"], "kubernetes.served_name"),
        model_flag=str(section.get("model_flag", "--model")),
        service_url=section.get("service_url"),
        http=client,
        timeout_s=_number(section.get("timeout_s", 900), "kubernetes.timeout_s", 5, 7200),
        smoke=_flag(section.get("smoke", True), "kubernetes.smoke"),
    )


def _known(data: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(sorted(known))})")


def _string(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: must be a non-empty string")
    return value


def _strings(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
        raise ConfigError(f"{key}: expected a list of strings")
    return tuple(str(v) for v in value)


def _number(value: Any, key: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key}: must be a number, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{key}: must be between {low} and {high}, got {value}")
    return float(value)


def _flag(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: must be true or false")
    return value
