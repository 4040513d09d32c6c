"""The pure what-if engine: catalogs, performance model, simulators, strategies, planner.

Imports only the standard library, numpy and pandas (and numba for the simulator's inner
loop): no Django, no other app of ours.

Modules:
- `advisor.engine.workload`: `Workload` (arrival times, prompt and output tokens as numpy
  arrays, optional client concurrency cap), Poisson/gamma generators, closed loops, the Azure
  2023 trace loader, resampling and time scaling.
"""
