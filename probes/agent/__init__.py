"""The standalone node agent (`python -m probes.agent`): imports no Django and no other app."""

VERSION = "0.1.0"
