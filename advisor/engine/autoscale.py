"""Elastic scaling: a Kubernetes HPA (autoscaling/v2) over days of load, and its manifests.

`simulate_hpa(curve, load, policy, cold_start_s)` steps the autoscaler every sync period
(15 s by default) over the load (constant within each 1-minute step) and returns, per load
step, the mean ready and billed replicas for `fleet.evaluate_fleet`. Semantics follow the
HPA controller:

- metric per replica from the load curve at the current per-replica rate: queue length
  (`vllm:num_requests_waiting`, plus the fluid backlog per replica when saturated), KV usage
  (`vllm:kv_cache_usage_perc`) or the busy fraction (DCGM GPU utilization, in %);
- desired = ceil(ready x metric / target), unchanged inside the 10% tolerance; pods not yet
  ready count as 0 (the controller's conservative scale-up);
- stabilization: scale-down takes the highest recommendation of the last
  `scale_down_stabilization_s` (default 300 s), scale-up the lowest of the last
  `scale_up_stabilization_s` (default 0);
- default rate limits: up by max(100%, 4 pods) and down by 100% per 15 s; min/max replicas;
  min 0 is KEDA's scale to zero (activation on the first request);
- a new replica is billed at once and serves after the cold start (weights / load bandwidth
  + startup overhead unless measured); a removed one stops at once.

`hpa_manifest` and `keda_manifest` write the recommended policy as YAML.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numba import njit

from advisor.engine.capacity import LoadCurve
from advisor.engine.scenario import LoadShape

FloatArray = npt.NDArray[np.float64]

METRIC_QUEUE = 0
METRIC_KV = 1
METRIC_BUSY = 2
METRIC_CODES = {
    "num_requests_waiting": METRIC_QUEUE,
    "kv_cache_usage": METRIC_KV,
    "gpu_utilization": METRIC_BUSY,
}
TOLERANCE = 0.1  # kube-controller-manager --horizontal-pod-autoscaler-tolerance


@dataclass(frozen=True)
class HpaPolicy:
    """An autoscaling policy: target metric and value, bounds, windows."""

    metric: str
    target: float
    min_replicas: int
    max_replicas: int
    scale_up_stabilization_s: float = 0.0
    scale_down_stabilization_s: float = 300.0
    sync_period_s: float = 15.0

    def describe(self) -> dict[str, object]:
        return {
            "metric": self.metric,
            "target": self.target,
            "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "scale_up_stabilization_s": self.scale_up_stabilization_s,
            "scale_down_stabilization_s": self.scale_down_stabilization_s,
            "sync_period_s": self.sync_period_s,
        }


def metric_table(curve: LoadCurve, metric: str) -> FloatArray:
    """The metric per replica at each grid rate of the curve (GPU utilization in %)."""
    if metric == "num_requests_waiting":
        return np.asarray(curve.waiting, dtype=np.float64)
    if metric == "kv_cache_usage":
        return np.asarray(curve.kv_usage, dtype=np.float64)
    return np.asarray(curve.busy_fraction, dtype=np.float64) * 100.0


@njit(cache=True)
def _hpa_loop(  # type: ignore[no-untyped-def]
    rate_rps,
    step_s,
    sync_s,
    grid_rps,
    grid_metric,
    metric_code,
    target,
    saturation_rps,
    min_replicas,
    max_replicas,
    up_window_s,
    down_window_s,
    cold_start_s,
    initial,
):
    steps = rate_rps.shape[0]
    ticks_per_step = max(int(round(step_s / sync_s)), 1)  # noqa: RUF046 - numba's round
    dt = step_s / ticks_per_step
    total_ticks = steps * ticks_per_step
    ready_out = np.zeros(steps)
    billed_out = np.zeros(steps)
    # pods: ready time of each started replica (a stack: the newest is removed first)
    ready_at = np.zeros(max_replicas + 1)
    pods = initial
    for i in range(pods):
        ready_at[i] = -1.0
    history = np.zeros(total_ticks + 1)  # desired replicas per tick
    backlog = 0.0
    top = grid_rps[grid_rps.shape[0] - 1]
    ready = pods  # pods [0, ready) serve; ready times only grow along the stack
    for tick in range(total_ticks):
        t = tick * dt
        m = tick // ticks_per_step
        lam = rate_rps[m]
        ready = min(ready, pods)
        while ready < pods and ready_at[ready] <= t:
            ready += 1
        # serve this tick
        backlog = max(0.0, backlog + (lam - ready * saturation_rps) * dt)
        ready_out[m] += ready / ticks_per_step
        billed_out[m] += pods / ticks_per_step
        # the controller
        if ready > 0:
            per = lam / ready
            value = np.interp(min(per, top), grid_rps, grid_metric)
            if metric_code == 0:
                value += backlog / ready
            elif per > top or backlog > 0.0:
                value = grid_metric[grid_metric.shape[0] - 1]
                if metric_code == 1:
                    value = max(value, 1.0)
            usage = ready * value
            ratio = usage / (max(pods, 1) * target)
            desired = pods
            if abs(ratio - 1.0) > 0.1:
                desired = int(math.ceil(usage / target - 1e-9))  # noqa: RUF046 - numba
        elif lam > 0.0 or backlog > 0.0:
            desired = max(pods, 1)  # activation: nothing serves yet, keep or start one
        else:
            desired = 0 if min_replicas == 0 else pods
        desired = min(max(desired, min_replicas), max_replicas)
        history[tick] = desired
        rec = desired
        if desired < pods:
            rec = desired
            for j in range(tick, -1, -1):
                if j * dt < t - down_window_s:
                    break
                rec = max(rec, int(history[j]))
            rec = min(rec, pods)
        elif desired > pods:
            rec = desired
            for j in range(tick, -1, -1):
                if j * dt < t - up_window_s:
                    break
                rec = min(rec, int(history[j]))
            rec = max(rec, pods)
            rec = min(rec, max(2 * pods, pods + 4))
        rec = min(max(rec, min_replicas), max_replicas)
        if rec > pods:
            for i in range(pods, rec):
                ready_at[i] = t + cold_start_s
            pods = rec
        elif rec < pods:
            pods = rec
    return ready_out, billed_out


def simulate_hpa(
    curve: LoadCurve, load: LoadShape, policy: HpaPolicy, *, cold_start_s: float
) -> tuple[FloatArray, FloatArray]:
    """Mean ready and billed replicas per load step under `policy` (module docstring)."""
    initial = max(policy.min_replicas, 1 if load.rate_rps[0] > 0 else policy.min_replicas)
    initial = min(
        max(initial, math.ceil(load.rate_rps[0] / max(curve.slo_rps, 1e-9))), policy.max_replicas
    )
    grid_rps, grid_metric = curve.grid0(metric_table(curve, policy.metric))
    ready, billed = _hpa_loop(
        np.ascontiguousarray(load.rate_rps, dtype=np.float64),
        float(load.step_s),
        float(policy.sync_period_s),
        np.ascontiguousarray(grid_rps, dtype=np.float64),
        np.ascontiguousarray(grid_metric, dtype=np.float64),
        METRIC_CODES[policy.metric],
        float(policy.target),
        float(curve.saturation_rps),
        int(policy.min_replicas),
        int(policy.max_replicas),
        float(policy.scale_up_stabilization_s),
        float(policy.scale_down_stabilization_s),
        float(cold_start_s),
        int(initial),
    )
    return np.asarray(ready, dtype=np.float64), np.asarray(billed, dtype=np.float64)


# --- manifests ------------------------------------------------------------------------------

PROMETHEUS_METRIC = {
    "num_requests_waiting": "vllm:num_requests_waiting",
    "kv_cache_usage": "vllm:kv_cache_usage_perc",
    "gpu_utilization": "DCGM_FI_DEV_GPU_UTIL",
}
# prometheus-adapter exposes a metric under a name without the colon
ADAPTER_METRIC = {
    "num_requests_waiting": "vllm_num_requests_waiting",
    "kv_cache_usage": "vllm_kv_cache_usage_perc",
    "gpu_utilization": "DCGM_FI_DEV_GPU_UTIL",
}


def yaml_text(value: object, indent: int = 0) -> str:
    """A small YAML emitter for nested dicts, lists and scalars (no anchors, no flow style)."""
    pad = "  " * indent
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}{key}:\n{yaml_text(item, indent + 1)}")
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
        return "\n".join(lines)
    if isinstance(value, list):
        lines = []
        for item in value:
            if isinstance(item, dict) and item:
                inner = yaml_text(item, indent + 1).split("\n")
                first = inner[0].strip()
                rest = "\n".join(inner[1:])
                lines.append(f"{pad}- {first}" + (f"\n{rest}" if rest else ""))
            else:
                lines.append(f"{pad}- {_scalar(item)}")
        return "\n".join(lines)
    return pad + _scalar(value)


def _scalar(value: object) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _target_value(policy: HpaPolicy) -> str:
    if policy.metric == "num_requests_waiting":
        return f"{policy.target:.3g}"
    if policy.metric == "kv_cache_usage":
        return f"{round(policy.target * 1000)}m"  # a fraction as a Kubernetes quantity
    return f"{policy.target:.3g}"


def hpa_manifest(policy: HpaPolicy, *, deployment: str, namespace: str = "default") -> str:
    """HPA autoscaling/v2 on a per-pod custom metric served by prometheus-adapter."""
    doc = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": f"{deployment}-hpa", "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
            "minReplicas": max(policy.min_replicas, 1),
            "maxReplicas": policy.max_replicas,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": ADAPTER_METRIC[policy.metric]},
                        "target": {"type": "AverageValue", "averageValue": _target_value(policy)},
                    },
                }
            ],
            "behavior": {
                "scaleUp": {
                    "stabilizationWindowSeconds": round(policy.scale_up_stabilization_s),
                    "selectPolicy": "Max",
                    "policies": [
                        {"type": "Percent", "value": 100, "periodSeconds": 15},
                        {"type": "Pods", "value": 4, "periodSeconds": 15},
                    ],
                },
                "scaleDown": {
                    "stabilizationWindowSeconds": round(policy.scale_down_stabilization_s),
                    "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
                },
            },
        },
    }
    return yaml_text(doc) + "\n"


def keda_manifest(
    policy: HpaPolicy,
    *,
    deployment: str,
    model_name: str,
    namespace: str = "default",
    prometheus_url: str = "http://prometheus.monitoring:9090",
) -> str:
    """KEDA ScaledObject with a Prometheus trigger (per-replica threshold; min 0 allowed)."""
    metric = PROMETHEUS_METRIC[policy.metric]
    if policy.metric == "gpu_utilization":
        query = f'sum({metric}{{pod=~"{deployment}-.*"}})'
    else:
        query = f'sum({metric}{{model_name="{model_name}"}})'
    doc = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": f"{deployment}-scaler", "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"name": deployment},
            "pollingInterval": round(policy.sync_period_s),
            "cooldownPeriod": round(policy.scale_down_stabilization_s),
            "minReplicaCount": policy.min_replicas,
            "maxReplicaCount": policy.max_replicas,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        "scaleUp": {
                            "stabilizationWindowSeconds": round(policy.scale_up_stabilization_s)
                        },
                        "scaleDown": {
                            "stabilizationWindowSeconds": round(policy.scale_down_stabilization_s)
                        },
                    }
                }
            },
            "triggers": [
                {
                    "type": "prometheus",
                    "metricType": "AverageValue",
                    "metadata": {
                        "serverAddress": prometheus_url,
                        "query": query,
                        "threshold": f"{policy.target:.4g}",
                    },
                }
            ],
        },
    }
    return yaml_text(doc) + "\n"
