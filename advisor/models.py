"""Assessments, benchmark jobs, rollouts and the savings ledger (added by their issues)."""
