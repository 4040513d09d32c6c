"""Advisor API views, one module per concept (`benchmarks`, ...); routes in `advisor.urls`."""
