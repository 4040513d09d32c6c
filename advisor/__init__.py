"""Assessments, benchmarks, rollouts, the savings ledger; the pure engine is `engine`."""
