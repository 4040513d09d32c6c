"""Writes of the advisor app (typed, keyword-only), one module per concept.

`benchmarks` (create, cancel), `benchmark_runs` (execute a claimed job), `calibration`
(profiles fitted on benchmark runs); other concepts add their own module here.
"""
