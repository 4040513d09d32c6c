"""Reads of the advisor app (typed, keyword-only), one module per concept (`benchmarks`, ...)."""
