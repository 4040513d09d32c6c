"""The five cost strategies, one module each, behind one interface (see `registry`).

Every strategy module defines `NAME`, `ORDER` (its place in reports) and

    evaluate(workload, deployment, prices, slo, *, context=None) -> StrategyResult

where `workload` is the deployment's `WorkloadSpec`, `deployment` its `DeploymentSpec`,
`prices` a `PriceBook`, `slo` its `SloSpec`, and `context` the assessment's shared state (catalog,
calibration profiles, the other deployments, a cache of simulated load curves); without one a
context is built from the deployment alone. `registry.STRATEGIES` finds the modules in this
package by themselves: a sixth strategy is one new module (plus its test).
"""
