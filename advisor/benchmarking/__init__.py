"""Real load against vLLM's OpenAI-compatible API: an async streaming client and its analysis.

Plain Python (aiohttp, numpy; no Django), so a Celery task wraps it and it tests alone.
Workloads come from `advisor.engine.workload`; `/metrics` is read with
`probes.agent.vllm_metrics`; local restarts for A/B use `probes.agent.vllm_process`.

Modules:
- `runner`: `Target`, `Limits`, `RunOptions`, `run_benchmark` / `arun_benchmark` -> result.
- `stream`: one streaming request, timed frame by frame (TTFT, ITL, e2e, usage).
- `prompts`: prompts of exact token lengths from the server's own tokenizer.
- `results`: `RequestResult`, `BenchmarkResult`, `PromptReport` (JSON round trip).
- `summary`: `summarize` (field names of `vllm bench serve`), `Slo` for goodput.
- `server_metrics`: `/metrics` before/during/after -> tokens, preemptions, KV, spec decode.
- `workloads`: `WorkloadSpec` (poisson, concurrency, replay) validated field by field.
- `sweep`: rate/concurrency sweeps and the goodput search.
- `ab`: A/B of engine args by restarting a local vLLM process; `compare`.
- `export`: JSON and CSV.
"""
