"""Which catalog GPU kind an inventory (NVML / amd-smi) name maps to."""

from __future__ import annotations

import pytest

from probes.gpu_kinds import gpu_kind_of


@pytest.mark.parametrize(
    ("model_name", "kind"),
    [
        ("NVIDIA H100 80GB HBM3", "H100-SXM"),
        ("AMD Instinct MI300X", "MI300X"),
        ("AMD Instinct MI325X", "MI325X"),
        ("AMD Instinct MI355X", "MI355X"),
        ("NVIDIA H20", "H20"),
        ("NVIDIA H20-3e", "H20-3e"),
        ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "RTX-PRO-6000-SE"),
        ("NVIDIA B300 SXM6 AC", "B300"),
        ("NVIDIA GB200", "GB200"),
        # a different SKU (1792 GB/s): no price or spec of the Server Edition applies
        ("NVIDIA RTX PRO 6000 Blackwell Workstation Edition", None),
    ],
)
def test_it_maps_inventory_names_to_catalog_kinds(model_name: str, kind: str | None) -> None:
    assert gpu_kind_of(model_name) == kind
