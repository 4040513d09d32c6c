"""The pure what-if engine: catalogs, performance model, serving simulator, calibration.

Imports only the standard library, numpy, pandas and numba (the simulator's compiled inner
loop): no Django, no other app of ours. Frozen dataclasses in, result objects out; no I/O in
constructors (file readers are separate functions); no global state; randomness only from a
`numpy.random.Generator` the caller seeds. Units are in the names (`_s`, `_bytes`, `_tokens`,
`_usd`, `_rps`, `_tok_s`).

Modules and their main API (stable; engine II's strategies and planner build on these):

- `workload`: `Workload(arrival_s, prompt_tokens, output_tokens, max_concurrency=None)`;
  `poisson_arrivals_s`, `gamma_arrivals_s` (burstiness as `vllm bench serve`),
  `synthetic_workload`, `closed_loop_workload`, `load_azure_trace(path)`,
  `resample_workload(w, rng, num_requests=, rate_rps=)`, `Workload.with_rate/time_scaled`.
  `Workload(..., prefix=PrefixBlocks(block_tokens, hashes, offsets))`: optional per-request
  prompt block hashes (ragged). Errors: `WorkloadError` naming the field, or the file line and
  column.
- `prefix_cache`: `prefix_cached_tokens(prefix, prompt_tokens, capacity_tokens=,
  kv_block_tokens=)` (vLLM's automatic prefix caching as an LRU pre-pass in arrival order),
  `reused_prompt_share(prefix, prompt_tokens)` (a trace's measured reuse), `cache_hits(...)`
  (GPU and host-offload tiers, over several replicas).
- `routing`: `route(replica, workload, num_replicas=, policy="round_robin"|"prefix_aware")`
  (which replica serves each request and what it finds in that replica's prefix cache).
- `catalog`: `DEFAULT_CATALOG.gpu(name) -> HardwareSpec`, `.model(name) -> ModelSpec` (built-in,
  else a vendored config.json in `data/configs/`), `.quant(name) -> QuantScheme`;
  `resolve_model(name_or_config_json_path)`, `model_from_hf_config(path)`,
  `Catalog.with_gpu/with_model/with_price`. A `ModelSpec` read from a config.json carries its
  per-layer structure (`architecture`: full / sliding / chunked / MLA / linear attention, dense
  or MoE MLP), its checkpoint's `weight_format` (`weight_format`: mxfp4, fp8, compressed-tensors,
  awq, gptq, modelopt) and `assumptions` (what the reader did not understand). Errors:
  `CatalogError` naming the field.
- `perf`: `Deployment(hardware, model, quant, kv_dtype="auto", tensor_parallel=1,
  gpu_memory_utilization=0.9, max_model_len=None, kv_cache_bytes=None,
  reference_context_tokens=None)` (raises `ConfigError`
  when the model does not fit or TP does not divide the heads), `memory_plan(...)`,
  `CalibrationProfile` (efficiencies, overheads, TP all-reduce latency, host/device overlap,
  API latency), `StepModel(deployment, profile).step_time_s(...)`.
- `sim`: `SchedulerConfig(max_num_seqs, max_num_batched_tokens, enable_chunked_prefill,
  block_size_tokens, prefill_first, enable_prefix_caching)`, `vllm_default_scheduler(hardware)`,
  `Replica(deployment, scheduler, profile)`, `simulate(replica, workload) -> SimResult` (vLLM
  V1 continuous batching, closed form over decode runs; prefix caching when the workload has
  block hashes), `simulate_static(replica, workload, StaticBatchConfig(...))`.
  `sim_reference.simulate_reference` is the readable step-by-step twin the tests compare with.
- `results`: `SimResult` (per-request send/first-token/finish times, preemptions, counters)
  and `SimResult.metrics(Slo(ttft_s=, tpot_s=, e2e_s=)) -> ServingMetrics` (throughputs,
  TTFT/TPOT/ITL/e2e percentiles, busy fraction, MBU, MFU, KV usage, preemptions, SLO
  attainment, goodput, USD per 1M output tokens).
- `profiles`: `DEFAULT_PROFILES.lookup(hardware, engine)`, the built-in fitted profiles,
  `load_profiles` / `save_profiles` (JSON).
- `calibration`: `MeasuredPoint`, `fit_points(...) -> FitResult` (profile + fit error),
  `evaluate_points`, `fit_cases` (published cases).
- `cases`: `read_cases(csv)`, `predict_case`, `validate_cases` for files in the
  `public_cases.csv` format; `Unmodellable` / `CaseError`.
- `python -m advisor.engine predict|validate|calibrate|fit-public` (see `__main__`).

Engine II (strategies and planner, built on the above):

- `scenario`: `Scenario` (deployments with `WorkloadSpec` sample + `LoadShape`, `SloSpec`,
  `EngineArgs`, `AutoscalingSpec`, prices, power, profiles, `Options`); `to_json` /
  `from_json` round-trip exactly; `load_scenario(path)`; errors: `ScenarioError` with `.field`.
- `advice`: `Projection`, `ConfigChange`, `StrategyResult`, `DeploymentPlan`, `Plan` (JSON).
- `capacity.load_curve` (a configuration across rates), `fleet.evaluate_fleet` / `fixed_fleet`
  (days of load), `autoscale.simulate_hpa` (+ HPA/KEDA YAML), `specdecode` (Leviathan et al.
  on the simulator), `replay` (the whole sample on today's configuration and router), `energy`.
- `strategies.<name>.evaluate(workload, deployment, prices, slo, *, context=None) ->
  StrategyResult`; `strategies.registry.STRATEGIES`.
- `planner.assess(scenario) -> Plan`; `plan_tables` (combinations, sensitivity);
  `python -m advisor.engine assess SCENARIO.json` (see `assess_cli`).
"""
