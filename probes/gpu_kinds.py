"""Which catalog GPU kind an NVML name is, and which price sheet row prices it.

A `PriceSheet.gpu_kind` is a catalog name ("H100-SXM"); agents report NVML names ("NVIDIA
H100 80GB HBM3"). A row whose `gpu_kind` equals the NVML name itself also counts, so an
organisation can price a GPU the catalog does not know. A GPU with no matching row has no
price here: the dashboard shows "no price" and leaves it out of dollar totals; assessments
say which list price they fell back to. Shared by the dashboard and the advisor (nobody may
import the dashboard).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from advisor.engine.catalog import DEFAULT_CATALOG, Catalog, CatalogError
from probes.models import PriceSheet

_VENDOR = re.compile(r"^(nvidia|tesla|geforce|quadro)\s+", re.IGNORECASE)


def gpu_kind_of(model_name: str, catalog: Catalog = DEFAULT_CATALOG) -> str | None:
    """The catalog name of an NVML GPU name, or None when the catalog does not know it.

    Tries the whole name (vendor words dropped) and then shorter prefixes of its words, so
    "NVIDIA H100 80GB HBM3" finds the alias "h100-80gb-hbm3" and "NVIDIA L4" finds "L4".
    """
    name = model_name.strip()
    while _VENDOR.match(name):
        name = _VENDOR.sub("", name, count=1)
    words = re.split(r"[\s_-]+", name)
    for count in range(len(words), 0, -1):
        try:
            return catalog.gpu("-".join(words[:count])).name
        except CatalogError:
            continue
    return None


@dataclass(frozen=True)
class GpuPrice:
    """The price that applies to one NVML GPU name (None: no price sheet row)."""

    model_name: str
    kind: str | None
    usd_per_gpu_hour: float | None
    source: str = ""
    as_of: date | None = None

    @property
    def label(self) -> str:
        return self.kind or self.model_name


def prices_for(model_names: set[str]) -> dict[str, GpuPrice]:
    """Price of each NVML name, from the price sheet (one query)."""
    sheet: dict[str, PriceSheet] = {row.gpu_kind.lower(): row for row in PriceSheet.objects.all()}
    result: dict[str, GpuPrice] = {}
    for name in model_names:
        kind = gpu_kind_of(name)
        row = sheet.get(name.lower()) or (sheet.get(kind.lower()) if kind else None)
        if row is None:
            result[name] = GpuPrice(name, kind, None)
        else:
            price = float(Decimal(row.usd_per_gpu_hour))
            source = f"{row.source}, {row.as_of:%Y-%m-%d}"
            result[name] = GpuPrice(name, kind or row.gpu_kind, price, source, row.as_of)
    return result
