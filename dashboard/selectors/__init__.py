"""Reads of the dashboard that are not the probes app's own (typed, keyword-only).

`fleet` (fleet overview), `gpus` (per-GPU series), `engine` (vLLM per deployment), `traces`
(request statistics). They build on `probes.selectors` where it has the query.
"""
