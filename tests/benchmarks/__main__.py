"""Run the benchmarks: `python -m tests.benchmarks [MODULE ...]` (see the package docstring)."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "var" / "bench" / "results.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks")
    parser.add_argument("modules", nargs="*", help="bench module names, e.g. bench_sim")
    args = parser.parse_args(argv)
    available = sorted(path.stem for path in Path(__file__).parent.glob("bench_*.py"))
    unknown = set(args.modules) - set(available)
    if unknown:
        parser.error(f"unknown benchmark module(s) {sorted(unknown)}; have {available}")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.test_settings")
    selected = args.modules or available
    if len(selected) > 1:
        return _each_in_its_own_process(selected, fresh=not args.modules)

    # Running some modules updates their figures and keeps the other modules' last figures.
    results: dict[str, dict[str, object]] = {}
    if args.modules and RESULTS.exists():
        results = json.loads(RESULTS.read_text())
        results = {k: v for k, v in results.items() if v.get("module") not in args.modules}
    failures = 0
    for name in selected:
        module = importlib.import_module(f"tests.benchmarks.{name}")
        started = time.perf_counter()
        try:
            for figure in module.run():
                print(figure.line(), flush=True)
                results[figure.name] = {
                    "value": figure.value, "unit": figure.unit,
                    "target": figure.target, "module": name,
                }  # fmt: skip
        except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others
            failures += 1
            print(f"BENCH-ERROR {name}\n{traceback.format_exc()}", file=sys.stderr, flush=True)
        print(f"# {name} took {time.perf_counter() - started:.1f} s", flush=True)
    if not available:
        print("# no benchmarks yet")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"# wrote {RESULTS.relative_to(ROOT)}")
    return 1 if failures else 0


def _each_in_its_own_process(names: list[str], *, fresh: bool) -> int:
    """Run each module in a child process of its own, one after the other.

    Modules set Django up against databases of their own (and warm numba, start servers):
    state one leaves in the process must not reach the next. Each child merges its figures
    into the results file; `fresh` (all modules) starts that file anew.
    """
    if fresh:
        RESULTS.unlink(missing_ok=True)
    failed = [
        name
        for name in names
        if subprocess.run([sys.executable, "-m", "tests.benchmarks", name], cwd=ROOT).returncode
    ]
    if failed:
        print(f"# failed: {' '.join(failed)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
