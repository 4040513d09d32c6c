"""Which price sheet row prices a GPU: moved to `probes.gpu_kinds` (shared with the advisor).

Kept as a re-export so the dashboard's imports stay as they were.
"""

from probes.gpu_kinds import GpuPrice, gpu_kind_of, prices_for

__all__ = ["GpuPrice", "gpu_kind_of", "prices_for"]
