"""Plotly figures built in Python from selector results; pages embed them as JSON.

Each builder takes plain data (a selector's result) and returns a `go.Figure` with the
project theme; the same figure is drawn by Plotly.js in the browser and rendered to a static
image for reports (`dashboard.reports.images`).
"""
