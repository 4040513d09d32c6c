"""`python -m advisor.engine assess SCENARIO.json`: the plan for a scenario file, as JSON.

The scenario format is `advisor.engine.scenario` (worked example and field reference in
`advisor/engine/examples/README.md`). The plan JSON (`advisor.engine.advice.Plan`) goes to
stdout or `--out`; `--summary` prints a short human-readable digest to stderr. A malformed
scenario exits with status 2 and one line naming the field; unknown models and SLOs no
configuration can meet are answers inside the plan, not errors.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from advisor.engine.advice import Plan
from advisor.engine.scenario import ScenarioError, load_scenario
from advisor.engine.strategies._common import usd

BAD_INPUT = 2


def add_assess_command(commands: Any) -> None:
    """Register the `assess` subcommand on the engine CLI's subparsers."""
    assess = commands.add_parser("assess", help="plan a fleet from a scenario file, print JSON")
    assess.add_argument("scenario", type=Path, help="scenario JSON (see advisor/engine/examples)")
    assess.add_argument("--out", type=Path, default=None, help="write the plan here")
    assess.add_argument("--strategies", default=None, help="comma-separated subset to run")
    assess.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    assess.add_argument("--summary", action="store_true", help="a digest on stderr")
    assess.add_argument("--compact", action="store_true", help="JSON on one line")
    assess.set_defaults(handler=cmd_assess)


def cmd_assess(args: argparse.Namespace) -> int:
    from advisor.engine.planner import assess

    try:
        scenario = load_scenario(args.scenario)
        changes: dict[str, Any] = {}
        if args.strategies:
            changes["strategies"] = tuple(s.strip() for s in args.strategies.split(",") if s)
        if args.seed is not None:
            changes["seed"] = args.seed
        if changes:
            scenario = scenario.with_options(**changes)
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return BAD_INPUT
    started = time.perf_counter()
    plan = assess(scenario)
    elapsed = time.perf_counter() - started
    text = plan.to_json(indent=None if args.compact else 2)
    if args.out:
        args.out.write_text(text + "\n")
    else:
        print(text)
    if args.summary:
        print(summary(plan), file=sys.stderr)
    print(
        f"# assessed {len(scenario.deployments)} deployment(s) in {elapsed:.1f} s", file=sys.stderr
    )
    return 0


def summary(plan: Plan) -> str:
    """The plan's main numbers in a few lines."""
    base, new = plan.fleet_baseline, plan.fleet_plan
    lines = [
        f"fleet today: {base.gpus:.1f} GPUs, utilization {base.utilization:.0%}, "
        f"{usd(base.usd_per_month)}/month, ${base.usd_per_1m_output_tokens:.3f}/1M output "
        f"tokens, {base.energy_j_per_output_token:.3f} J/token, "
        f"{base.energy_kwh_per_month:,.0f} kWh/month",
        f"fleet plan:  {new.gpus:.1f} GPUs, utilization {new.utilization:.0%}, "
        f"{usd(new.usd_per_month)}/month, ${new.usd_per_1m_output_tokens:.3f}/1M output "
        f"tokens, {new.energy_j_per_output_token:.3f} J/token, "
        f"{new.energy_kwh_per_month:,.0f} kWh/month; saves "
        f"{usd(plan.savings_usd_per_month)}/month ({plan.savings_fraction:.1%})",
    ]
    for item in plan.deployments:
        lines.append(f"  {item.deployment}: [{item.status}] {item.message}")
    lines.append("strategy combination -> GPUs, utilization, USD/month, savings:")
    for row in plan.combinations:
        label = " + ".join(row.strategies) or "right-size only"
        lines.append(
            f"  {label:60} {row.gpus:6.1f} {row.utilization:6.1%} {usd(row.usd_per_month):>12}"
            f" {row.savings_fraction:7.1%}{'' if row.meets_slo else '  (misses SLOs)'}"
        )
    if plan.sensitivity:
        lines.append("sensitivity (plan USD/month at low / high):")
        for sens in plan.sensitivity:
            lines.append(
                f"  {sens.input:42} {sens.low_label:>6} {usd(sens.plan_usd_per_month_low):>10}"
                f"  {sens.high_label:>6} {usd(sens.plan_usd_per_month_high):>10}"
            )
    return "\n".join(lines)
