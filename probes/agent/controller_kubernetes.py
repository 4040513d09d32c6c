"""Kubernetes node controller: a vLLM Deployment whose container command the agent patches.

Applying a config patches the Deployment's vLLM container `command` (the whole list, as the
production-stack and AIBrix manifests carry vLLM's args there) and `args` (cleared, so no
stale flags survive), and `spec.replicas` when the config sets replicas, with a strategic
merge patch through the official client (`AppsV1Api.patch_namespaced_deployment`). It then
waits with `kubectl rollout status` semantics:

- `status.observedGeneration` must reach `metadata.generation` (the controller saw it);
- a `Progressing` condition with reason `ProgressDeadlineExceeded` is a failure;
- `updatedReplicas` must reach `spec.replicas`, no old replicas may remain
  (`status.replicas` == `updatedReplicas`), and `availableReplicas` must reach
  `updatedReplicas`.

On failure (deadline, or `timeout_s`, or a failed smoke request through `service_url`) the
previous command, args and replicas are patched back and waited for the same way: the
template then equals the previous revision's, so the Deployment controller scales the old
ReplicaSet back up, which is what `kubectl rollout undo` does. An `autoscaling` manifest
(`autoscaling/v2` HorizontalPodAutoscaler) is created or replaced after the rollout is done.

Readings are the raw apps/v1 JSON (`_preload_content=False`), so the contract the tests'
fake API server speaks is the documented wire format, not the client's model classes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import httpx
from kubernetes import client as k8s

from probes.agent.controller import ApplyError, Health, smoke_request
from probes.agent.desired import NodeConfig
from probes.agent.vllm_process import engine_args_to_argv

log = logging.getLogger(__name__)
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
POLL_S = 1.0


class RolloutWaitError(RuntimeError):
    """The Deployment did not complete its rollout (deadline exceeded or timed out)."""


def rollout_status(deployment: Mapping[str, Any]) -> tuple[bool, str]:
    """(done, message) as `kubectl rollout status` decides it; raises on a passed deadline."""
    metadata = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    generation = metadata.get("generation") or 0
    if generation > (status.get("observedGeneration") or 0):
        return False, "waiting for the deployment spec update to be observed"
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and (
            condition.get("reason") == "ProgressDeadlineExceeded"
        ):
            name = metadata.get("name", "?")
            raise RolloutWaitError(f"deployment {name!r} exceeded its progress deadline")
    wanted = spec.get("replicas", 1)
    updated = status.get("updatedReplicas") or 0
    replicas = status.get("replicas") or 0
    available = status.get("availableReplicas") or 0
    if wanted is not None and updated < wanted:
        return False, f"{updated} out of {wanted} new replicas have been updated"
    if replicas > updated:
        return False, f"{replicas - updated} old replicas are pending termination"
    if available < updated:
        return False, f"{available} of {updated} updated replicas are available"
    return True, "successfully rolled out"


class KubernetesController:
    """Applies configs to one Deployment's vLLM container (see the module docstring)."""

    kind = "kubernetes"

    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        namespace: str,
        deployment: str,
        container: str,
        base_command: Sequence[str],
        model: str,
        served_name: str,
        model_flag: str = "--model",
        service_url: str | None = None,
        http: httpx.Client | None = None,
        timeout_s: float = 900.0,
        smoke: bool = True,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.apps = k8s.AppsV1Api(api_client)
        self.core = k8s.CoreV1Api(api_client)
        self.autoscaling = k8s.AutoscalingV2Api(api_client)
        self.namespace = namespace
        self.deployment = deployment
        self.container = container
        self.base_command = tuple(base_command)
        self.model = model
        self.served_name = served_name
        self.model_flag = model_flag
        self.base_url = service_url.rstrip("/") if service_url else None
        self.http = http or httpx.Client(timeout=30.0)
        self.timeout_s = timeout_s
        self.smoke = smoke
        self.sleep = sleep
        self.restarts = 0
        self.last_exit: Mapping[str, Any] | None = None
        self._config: NodeConfig | None = None
        self._restarts_at_start: int | None = None

    # -- what the Deployment runs ------------------------------------------------------------

    def command_for(self, config: NodeConfig | None) -> list[str]:
        model = (config.model if config and config.model else None) or self.model
        model_part = [self.model_flag, model] if self.model_flag else [model]
        args = engine_args_to_argv(config.engine_args) if config else ()
        return [*self.base_command, *model_part, *args]

    def read(self) -> dict[str, Any]:
        response = self.apps.read_namespaced_deployment(
            self.deployment, self.namespace, _preload_content=False
        )
        return _json(response)

    def _container(self, deployment: Mapping[str, Any]) -> dict[str, Any]:
        containers = deployment["spec"]["template"]["spec"]["containers"]
        for container in containers:
            if container.get("name") == self.container:
                found: dict[str, Any] = container
                return found
        names = [c.get("name") for c in containers]
        raise ApplyError(f"deployment {self.deployment!r} has no container {self.container!r} "
                         f"(it has {names})", restored=True)  # fmt: skip

    def running_config(self) -> NodeConfig | None:
        return self._config

    # -- NodeController --------------------------------------------------------------------

    def start(self, config: NodeConfig | None) -> None:
        """Adopt the Deployment: `config` is what runs when its command is `config`'s."""
        try:
            container = self._container(self.read())
        except k8s.ApiException as exc:
            raise ApplyError(f"cannot read deployment: {_api_error(exc)}", restored=False) from exc
        # None: the Deployment runs something else, so any desired config gets applied.
        current = [*(container.get("command") or []), *(container.get("args") or [])]
        matches = current == self.command_for(config)
        self._config = (config or NodeConfig()) if matches else None

    def apply(self, config: NodeConfig) -> None:
        try:
            before = self.read()
        except k8s.ApiException as exc:
            raise ApplyError(f"cannot read deployment: {_api_error(exc)}", restored=True) from exc
        container = self._container(before)
        previous = {
            "command": container.get("command"),
            "args": container.get("args"),
            "replicas": (before.get("spec") or {}).get("replicas"),
        }
        try:
            self._patch(self.command_for(config), None, config.replicas)
            self._wait()
            if self.smoke and self.base_url:
                smoke_request(self.http, self.base_url, self.served_name)
            if config.autoscaling:
                self._apply_autoscaling(config.autoscaling)
        except (RolloutWaitError, RuntimeError, k8s.ApiException) as exc:
            reason = _api_error(exc) if isinstance(exc, k8s.ApiException) else str(exc)
            log.warning("deployment rollout failed (%s): undoing", reason)
            self._undo(previous, reason)
            raise ApplyError(reason, restored=True) from exc
        self._config = config

    def _undo(self, previous: Mapping[str, Any], reason: str) -> None:
        try:
            self._patch(previous["command"], previous["args"], previous["replicas"])
            self._wait()
        except (RolloutWaitError, k8s.ApiException) as exc:
            detail = _api_error(exc) if isinstance(exc, k8s.ApiException) else str(exc)
            raise ApplyError(f"{reason}; undo failed too: {detail}", restored=False) from exc

    def restart(self) -> None:
        """Kubernetes restarts pods itself; nothing to do here."""

    def check(self) -> Health:
        try:
            deployment = self.read()
        except k8s.ApiException as exc:
            return Health(running=True, healthy=False, detail=f"cannot read: {_api_error(exc)}")
        except (OSError, ValueError) as exc:  # unreachable API server: nothing to restart here
            return Health(running=True, healthy=False, detail=f"API server: {exc}")
        self._count_restarts(deployment)
        status = deployment.get("status") or {}
        available = status.get("availableReplicas") or 0
        wanted = (deployment.get("spec") or {}).get("replicas", 1)
        healthy = available >= min(1, wanted or 0) and available > 0
        detail = "" if healthy else f"{available} of {wanted} replicas available"
        return Health(running=True, healthy=healthy, detail=detail)

    def close(self) -> None:
        """The Deployment keeps serving when the agent stops."""

    # -- helpers ---------------------------------------------------------------------------

    def _patch(
        self, command: Sequence[str] | None, args: Sequence[str] | None, replicas: int | None
    ) -> None:
        container: dict[str, Any] = {"name": self.container, "command": command, "args": args}
        body: dict[str, Any] = {"spec": {"template": {"spec": {"containers": [container]}}}}
        if replicas is not None:
            body["spec"]["replicas"] = replicas
        self.apps.patch_namespaced_deployment(
            self.deployment, self.namespace, body,
            _content_type=STRATEGIC_MERGE, _preload_content=False,
        )  # fmt: skip

    def _wait(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        message = "not read yet"
        while time.monotonic() < deadline:
            done, message = rollout_status(self.read())
            if done:
                return
            self.sleep(POLL_S)
        raise RolloutWaitError(f"rollout not done after {self.timeout_s:.0f} s: {message}")

    def _count_restarts(self, deployment: Mapping[str, Any]) -> None:
        """Pods' container restarts since the agent started, as the local `restarts` counter."""
        labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        if not labels:
            return
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        try:
            response = self.core.list_namespaced_pod(
                self.namespace, label_selector=selector, _preload_content=False
            )
        except k8s.ApiException:
            return
        total = 0
        for pod in _json(response).get("items", []):
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                if status.get("name") == self.container:
                    total += int(status.get("restartCount") or 0)
        if self._restarts_at_start is None:
            self._restarts_at_start = total
        self.restarts = max(self.restarts, total - self._restarts_at_start)

    def _apply_autoscaling(self, manifest: Mapping[str, Any]) -> None:
        if manifest.get("kind") != "HorizontalPodAutoscaler":
            log.warning("autoscaling manifest of kind %r not applied: only autoscaling/v2 "
                        "HorizontalPodAutoscaler is supported", manifest.get("kind"))  # fmt: skip
            return
        name = (manifest.get("metadata") or {}).get("name") or self.deployment
        body = {**manifest, "metadata": {**(manifest.get("metadata") or {}), "name": name}}
        try:
            self.autoscaling.patch_namespaced_horizontal_pod_autoscaler(
                name, self.namespace, body,
                _content_type="application/merge-patch+json", _preload_content=False,
            )  # fmt: skip
        except k8s.ApiException as exc:
            if exc.status != 404:
                raise
            self.autoscaling.create_namespaced_horizontal_pod_autoscaler(
                self.namespace, cast(Any, body), _preload_content=False
            )


def _json(response: object) -> dict[str, Any]:
    """The JSON body of a `_preload_content=False` answer (a urllib3-style response)."""
    raw = getattr(response, "data", None)
    if raw is None:
        raw = cast(Any, response).read()
    data: dict[str, Any] = json.loads(raw)
    return data


def _api_error(exc: k8s.ApiException) -> str:
    reason = exc.reason or ""
    try:
        message = json.loads(exc.body or "{}").get("message", "")
    except (ValueError, AttributeError):
        message = ""
    return f"{exc.status} {reason}: {message}".strip()
