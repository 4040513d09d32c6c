"""Rollout logic that needs no Django: transitions, batches, bake gates, ledger arithmetic.

The Django side (`advisor.services.rollouts`, `rollout_steps`, `rollout_ledger`) loads rows,
calls these functions and stores what they return; they test alone, on plain JSON.
"""
