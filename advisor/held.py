"""Deployments held at today's cost in a stored plan's totals: not priced, never dropped.

A deployment the plan does not price keeps today's configuration: one below the data floor
(`advisor.evidence`: status "not_enough_data", never given to the engine) or one whose
what-if change does not fit (status "infeasible": the engine could not resolve it). Dropping
it from the totals would show the others' savings as the whole fleet's, so `plan_hold` adds
each held deployment's GPUs and monthly cost to both sides of the stored plan (today and the
plan, every strategy combination row, both ends of every sensitivity row; at the low and
high GPU price for that row): it adds nothing to the savings in dollars and the savings
fractions are recomputed over the larger base. Latency, utilization and per-token figures
keep describing the simulated deployments. The plan's `held` list says which and why.

Works on the plan as stored (JSON: non-finite floats are strings); Django-free.
"""

from __future__ import annotations

import copy
import math
from typing import Any

HELD_STATUSES = ("not_enough_data", "infeasible")


def held_entry(
    *,
    deployment: str,
    status: str,
    reason: str,
    hardware: str,
    gpus: float,
    usd_per_gpu_hour: float,
    hours_per_month: float,
) -> dict[str, Any]:
    """One held deployment at today's cost: its GPUs for the whole month at its price."""
    if status not in HELD_STATUSES:
        raise ValueError(f"status: expected one of {HELD_STATUSES}, got {status!r}")
    usd_per_hour = gpus * usd_per_gpu_hour
    return {
        "deployment": deployment,
        "status": status,
        "reason": reason,
        "hardware": hardware,
        "gpus": gpus,
        "usd_per_gpu_hour": usd_per_gpu_hour,
        "usd_per_hour": usd_per_hour,
        "usd_per_month": usd_per_hour * hours_per_month,
    }


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _add(row: dict[str, Any], key: str, amount: float) -> None:
    value = _number(row.get(key))
    if value is not None:
        row[key] = value + amount


def _price_factor(label: Any) -> float:
    """The GPU price row's factor from its label (the engine writes "x0.8")."""
    if isinstance(label, str) and label.startswith("x"):
        try:
            return float(label[1:])
        except ValueError:
            return 1.0
    return 1.0


def plan_hold(plan: dict[str, Any], held: list[dict[str, Any]]) -> dict[str, Any]:
    """A copy of the stored `plan` with `held` deployments in its totals (module docstring)."""
    if plan.get("held"):
        raise ValueError("held: this plan already holds deployments; hold the engine's plan")
    out = copy.deepcopy(plan)
    out["held"] = [dict(entry) for entry in held]
    if not held:
        return out
    gpus = sum(float(entry["gpus"]) for entry in held)
    usd_hour = sum(float(entry["usd_per_hour"]) for entry in held)
    usd_month = sum(float(entry["usd_per_month"]) for entry in held)
    before = _number((plan.get("fleet_baseline") or {}).get("usd_per_month")) or 0.0
    for key in ("fleet_baseline", "fleet_plan"):
        totals = out.get(key)
        if isinstance(totals, dict):
            added = {"gpus": gpus, "gpus_peak": gpus, "usd_per_hour": usd_hour,
                     "usd_per_month": usd_month}  # fmt: skip
            for field, amount in added.items():
                _add(totals, field, amount)
    base = before + usd_month
    saved = _number(out.get("savings_usd_per_month"))
    if saved is not None:
        out["savings_fraction"] = saved / base if base else 0.0
    for row in out.get("combinations") or ():
        _add(row, "usd_per_month", usd_month)
        _add(row, "gpus", gpus)
        row_saved = _number(row.get("savings_usd_per_month"))
        if row_saved is not None:
            row["savings_fraction"] = row_saved / base if base else 0.0
    for row in out.get("sensitivity") or ():
        price = row.get("input") == "GPU price"
        for end in ("low", "high"):
            factor = _price_factor(row.get(f"{end}_label")) if price else 1.0
            cost = _number(row.get(f"plan_usd_per_month_{end}"))
            if cost is None:
                continue  # cannot be served at that end: stays infinite
            today = before * factor + usd_month * factor
            row[f"plan_usd_per_month_{end}"] = cost + usd_month * factor
            row[f"savings_fraction_{end}"] = (
                1.0 - (cost + usd_month * factor) / today if today > 0 else 0.0
            )
        low, high = (_number(row.get(f"plan_usd_per_month_{end}")) for end in ("low", "high"))
        if price and low is not None and high is not None:
            row["swing_usd_per_month"] = abs(high - low)
    return out


def held_of(plan: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The deployments a stored plan holds at today's cost (none for older plans)."""
    return [dict(entry) for entry in (plan or {}).get("held") or ()]
