"""The pure what-if engine: catalogs, performance model, simulators, strategies, planner.

Imports only the standard library, numpy and pandas: no Django, no other app of ours.
"""
