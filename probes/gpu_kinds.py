"""Which catalog GPU kind an NVML name is, and which price sheet row prices it.

A `PriceSheet.gpu_kind` is a catalog name ("H100-SXM"); agents report NVML names ("NVIDIA
H100 80GB HBM3"). A row whose `gpu_kind` equals the NVML name itself also counts, so an
organisation can price a GPU the catalog does not know. A GPU with no matching row has no
price here: the dashboard shows "no price" and leaves it out of dollar totals; assessments
say which list price they fell back to. A row holding a value out of `advisor.engine.bounds`
(stored before the checks existed) counts as no row, and is named in `GpuPrice.refused`.
The admin's checks of a row's kind live here too (`price_kind_problem`). Shared by the
dashboard and the advisor (nobody may import the dashboard).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.core.exceptions import ValidationError

from advisor.engine.bounds import RefusedValue
from advisor.engine.catalog import DEFAULT_CATALOG, Catalog, CatalogError
from probes.bounds import stored_refusal
from probes.models import Gpu, PriceSheet

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


def price_kind_resolve(kind: str, catalog: Catalog = DEFAULT_CATALOG) -> str:
    """The name a price sheet row is saved under: the catalog's own name for a catalog kind or
    alias ("h100-80gb-hbm3" -> "H100-SXM", so the row prices those GPUs), else as given."""
    try:
        return catalog.gpu(kind).name
    except CatalogError:
        return kind


def price_kind_problem(kind: str, catalog: Catalog = DEFAULT_CATALOG) -> str | None:
    """Why no GPU could ever take a price sheet row's kind (None: a catalog kind, or the NVML
    name of a GPU in the inventory)."""
    if not kind:
        return "required: a catalog GPU kind, e.g. H100-SXM"
    if _catalog_knows(kind, catalog) or Gpu.objects.filter(model_name__iexact=kind).exists():
        return None
    known = ", ".join(spec.name for spec in catalog.gpus)
    return (
        f"unknown GPU kind {kind!r}: not in the catalog ({known}) and no GPU in the inventory "
        "reports that NVML name"
    )


def validate_catalog_gpu_kind(value: str) -> None:
    """Field validator: empty, or a GPU kind the engine's catalog knows (name or alias)."""
    if value and not _catalog_knows(value, DEFAULT_CATALOG):
        known = ", ".join(spec.name for spec in DEFAULT_CATALOG.gpus)
        raise ValidationError(f"unknown GPU kind {value!r}; the catalog knows {known}")


def _catalog_knows(kind: str, catalog: Catalog) -> bool:
    try:
        catalog.gpu(kind)
    except CatalogError:
        return False
    return True


@dataclass(frozen=True)
class GpuPrice:
    """The price that applies to one NVML GPU name (None: no usable price sheet row).

    `refused`: the row that would have priced it but holds a value out of its bound
    (stored before the check existed); it is skipped, never used, and named here.
    """

    model_name: str
    kind: str | None
    usd_per_gpu_hour: float | None
    source: str = ""
    as_of: date | None = None
    refused: tuple[RefusedValue, ...] = ()

    @property
    def label(self) -> str:
        return self.kind or self.model_name


PRICE_ROW_FIELDS = ("usd_per_gpu_hour", "as_of")


def price_rows() -> tuple[dict[str, PriceSheet], dict[str, tuple[RefusedValue, ...]]]:
    """The price sheet by lower-case kind, usable rows and refused rows apart (one query)."""
    usable: dict[str, PriceSheet] = {}
    refused: dict[str, tuple[RefusedValue, ...]] = {}
    for row in PriceSheet.objects.all():
        problems = tuple(
            found
            for name in PRICE_ROW_FIELDS
            if (found := stored_refusal(row, name, "row skipped, as if the kind had no price"))
        )
        if problems:
            refused[row.gpu_kind.lower()] = problems
        else:
            usable[row.gpu_kind.lower()] = row
    return usable, refused


def prices_for(model_names: set[str]) -> dict[str, GpuPrice]:
    """Price of each NVML name, from the price sheet (one query); refused rows are skipped."""
    sheet, refused = price_rows()
    result: dict[str, GpuPrice] = {}
    for name in model_names:
        kind = gpu_kind_of(name)
        keys = [name.lower()] + ([kind.lower()] if kind else [])
        row = next((sheet[key] for key in keys if key in sheet), None)
        skipped = tuple(problem for key in keys for problem in refused.get(key, ()))
        if row is None:
            result[name] = GpuPrice(name, kind, None, refused=skipped)
        else:
            price = float(Decimal(row.usd_per_gpu_hour))
            source = f"{row.source}, {row.as_of:%Y-%m-%d}"
            result[name] = GpuPrice(
                name, kind or row.gpu_kind, price, source, row.as_of, refused=skipped
            )
    return result
