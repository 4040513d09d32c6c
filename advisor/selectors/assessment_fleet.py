"""A cluster's fleet as an assessment needs it: GPUs, engine args, prices, SLOs, calibration.

Everything comes from the database: GPUs per node and catalog kind (NVML names mapped by
`probes.gpu_kinds`), each deployment's current vLLM engine args and model (its stored
config.json, else the catalog), prices from the user-editable `PriceSheet` with their source
and date (a kind without a row falls back to the catalog's list price, and says so; a row
for a catalog GPU kind the cluster does not run is a kind deployments may move to, in
`Fleet.offered`), SLOs
per deployment (fields left empty are the defaults, marked as such), and per GPU kind the
calibration profile to use (a fitted record from this fleet's benchmarks with its fit error,
else the engine's built-in profile).

A stored value out of `advisor.engine.bounds` (a row written before the checks existed) never
reaches the engine: it is listed in `Fleet.refused` by model, id, field and value; a refused
price falls back to the catalog's, a refused SLO or replica count leaves its deployment out
(a data gap), and everything else is assessed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from advisor.engine.bounds import RefusedValue
from advisor.engine.catalog import DEFAULT_CATALOG, CatalogError, ModelSpec, resolve_model
from advisor.engine.perf import CalibrationProfile
from advisor.models import SLO_DEFAULTS, DeploymentSlo
from advisor.selectors.benchmarks import calibration_profile_for
from probes.bounds import stored_refusal
from probes.gpu_kinds import gpu_kind_of, price_rows, prices_for
from probes.hf_config import config_reading
from probes.models import Cluster, Gpu, ModelDeployment


@dataclass(frozen=True)
class GpuInfo:
    id: int
    node: str
    index: int
    model_name: str
    kind: str | None
    memory_bytes: int


@dataclass(frozen=True)
class Price:
    """USD per GPU-hour of one kind and where the figure came from."""

    kind: str
    usd_per_gpu_hour: float
    source: str
    as_of: str | None
    from_price_sheet: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "usd_per_gpu_hour": self.usd_per_gpu_hour,
            "source": self.source,
            "as_of": self.as_of,
            "from_price_sheet": self.from_price_sheet,
        }


@dataclass(frozen=True)
class SloValue:
    value: float
    is_default: bool


@dataclass(frozen=True)
class Calibration:
    """The profile used for one GPU kind and why."""

    kind: str
    profile: CalibrationProfile
    record_id: int | None
    fit_median_ape: float | None
    source: str

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "record_id": self.record_id,
            "fit_median_ape": self.fit_median_ape,
            "source": self.source,
            "profile": self.profile.to_dict(),
        }


@dataclass(frozen=True)
class DeploymentFleet:
    """One deployment's hardware and configuration, with what could not be resolved."""

    id: int
    served_name: str
    model_id: str
    model: ModelSpec | None
    engine_args: dict[str, Any]
    replicas: int
    gpus: tuple[GpuInfo, ...]
    kind: str | None
    slo: dict[str, SloValue]
    problems: tuple[str, ...] = ()
    # The redundancy rule set with the SLOs (None: the engine's default rule).
    min_replicas: int | None = None
    # The stored config.json `model` was read from (None: a catalog model); the scenario
    # carries it so the engine reads the same model (`Scenario.models`).
    model_config: dict[str, Any] | None = None

    @property
    def gpu_ids(self) -> list[int]:
        return [gpu.id for gpu in self.gpus]

    def tensor_parallel(self) -> tuple[object, str]:
        """Tensor parallel size and where it came from: the engine args, else GPUs / replicas
        (a replica spanning all its GPUs); the value is checked when the scenario is built."""
        for key in ("tensor_parallel_size", "tensor-parallel-size", "--tensor-parallel-size"):
            if key in self.engine_args:
                return self.engine_args[key], "engine args"
        replicas = max(self.replicas, 1)
        if self.gpus and len(self.gpus) % replicas == 0:
            return len(self.gpus) // replicas, (
                f"not in the engine args: {len(self.gpus)} GPUs / {replicas} replica(s)"
            )
        return 1, "not in the engine args: 1 (GPUs do not divide evenly into replicas)"


@dataclass(frozen=True)
class Fleet:
    cluster: Cluster
    gpus: tuple[GpuInfo, ...]
    deployments: tuple[DeploymentFleet, ...]
    prices: dict[str, Price]
    calibrations: dict[str, Calibration]
    unknown_gpu_names: tuple[str, ...] = field(default=())
    # Stored values out of their bounds (rows written before the checks existed), each
    # skipped by name: a refused price falls back to the catalog's, a refused SLO or replica
    # count leaves its deployment out (a data gap); the rest is assessed.
    refused: tuple[RefusedValue, ...] = field(default=())
    # Price sheet rows for catalog GPU kinds this cluster does not run: where the planner may
    # move a deployment (advisor.engine.hardware).
    offered: dict[str, Price] = field(default_factory=dict)

    def price_of_gpu(self) -> dict[int, float | None]:
        """USD per GPU-hour of every GPU id (None: a kind the catalog does not know)."""
        return {
            gpu.id: (self.prices[gpu.kind].usd_per_gpu_hour if gpu.kind in self.prices else None)
            for gpu in self.gpus
        }

    def gpus_per_node_and_kind(self) -> list[dict[str, Any]]:
        counts = Counter((gpu.node, gpu.kind or gpu.model_name) for gpu in self.gpus)
        return [
            {"node": node, "kind": kind, "gpus": count}
            for (node, kind), count in sorted(counts.items())
        ]


def config_model_name(deployment: ModelDeployment) -> str:
    """The name a deployment's stored config.json model goes by in a scenario's `models`.

    Its own per deployment (served names are unique in a cluster, and no catalog name holds
    "@"), so it can neither replace a catalog model another deployment uses nor clash with
    another deployment's config; no "/" because the catalog looks a name up by its last path
    part: "acme/chat-9000" served as "chat" is "acme--chat-9000@chat".
    """
    return f"{deployment.model_id}@{deployment.served_name}".replace("/", "--")


def model_resolve(deployment: ModelDeployment) -> tuple[ModelSpec | None, str | None]:
    """The model a deployment serves, and the problem when there is none (a named data gap).

    Its stored config.json first (from its agent, or uploaded on its page): the engine reads
    any supported architecture from it. Else the catalog by model id or served name
    (`model_spec_for`). A stored config the engine cannot read falls back to the catalog too,
    and the problem names both.
    """
    config_error = None
    if deployment.hf_config:
        reading = config_reading(deployment.hf_config, name=config_model_name(deployment))
        if reading.model is not None:
            return reading.model, None
        config_error = reading.error
    model = model_spec_for(deployment)
    if model is not None:
        return model, None
    if config_error is not None:
        return None, (
            f"model {deployment.model_id!r} is not in the engine's catalog and its config.json "
            f"cannot be read: {config_error} (upload a corrected one on its page)"
        )
    return None, (
        f"model {deployment.model_id!r} is not in the engine's catalog and no config.json "
        "was reported: upload one on its page"
    )


def model_spec_for(deployment: ModelDeployment) -> ModelSpec | None:
    """The catalog model a deployment serves: its model id, then its served name, each also
    with trailing words dropped ("llama-3-70b-chat" -> "Llama-3-70B"), or a config.json path."""
    if deployment.model_id.endswith(".json") or deployment.model_id.startswith("/"):
        try:
            return resolve_model(deployment.model_id)
        except (CatalogError, OSError):
            return None
    for name in (deployment.model_id, deployment.served_name):
        words = name.split("/")[-1].replace("_", "-").split("-")
        for count in range(len(words), 0, -1):
            try:
                return DEFAULT_CATALOG.model("-".join(words[:count]))
            except CatalogError:
                continue
    return None


SLO_REFUSED = "deployment not assessed (fix its SLO in the admin)"
REPLICAS_REFUSED = "deployment not assessed (fix its replicas in the admin)"


def slo_of(deployment: ModelDeployment) -> tuple[dict[str, SloValue], tuple[RefusedValue, ...]]:
    """The deployment's SLOs (defaults marked), and its stored values out of their bounds."""
    stored = DeploymentSlo.objects.filter(deployment=deployment).first()
    values: dict[str, SloValue] = {}
    refused: list[RefusedValue] = []
    for name, default in SLO_DEFAULTS.items():
        value = getattr(stored, name, None) if stored is not None else None
        bad = stored_refusal(stored, name, SLO_REFUSED) if stored and value is not None else None
        if bad:
            refused.append(bad)
            value = None  # never reaches the engine; the deployment becomes a data gap
        values[name] = SloValue(default, True) if value is None else SloValue(float(value), False)
    return values, tuple(refused)


def min_replicas_of(deployment: ModelDeployment) -> tuple[int | None, RefusedValue | None]:
    """The redundancy rule stored with the SLOs (None: the default), or its refusal."""
    stored = DeploymentSlo.objects.filter(deployment=deployment).first()
    if stored is None or stored.min_replicas is None:
        return None, None
    bad = stored_refusal(stored, "min_replicas", SLO_REFUSED)
    return (None, bad) if bad else (int(stored.min_replicas), None)


def _price(
    kind: str,
    sheet_price: float | None,
    source: str,
    as_of: str | None,
    refused: tuple[RefusedValue, ...] = (),
) -> Price:
    if sheet_price is not None:
        return Price(kind, sheet_price, source, as_of, True)
    spec = DEFAULT_CATALOG.gpu(kind)
    why = (
        "price sheet row refused: " + "; ".join(r.text for r in refused)
        if refused
        else f"no price sheet row for {kind}"
    )
    return Price(
        kind, spec.price_usd_per_hour, f"catalog list price ({why}): {spec.price_source}",
        None, False,
    )  # fmt: skip


def fleet_of(*, cluster: Cluster) -> Fleet:
    """Read the cluster's GPUs, deployments, prices, SLOs and calibration profiles."""
    gpu_rows = Gpu.objects.filter(node__cluster=cluster).select_related("node")
    gpus = tuple(
        GpuInfo(g.id, g.node.hostname, g.index, g.model_name, gpu_kind_of(g.model_name),
                g.memory_bytes)
        for g in gpu_rows.order_by("node__hostname", "index")
    )  # fmt: skip
    by_id = {gpu.id: gpu for gpu in gpus}
    sheet = prices_for({gpu.model_name for gpu in gpus})
    prices: dict[str, Price] = {}
    refused: dict[tuple[str, int | None, str], RefusedValue] = {}
    for sheet_price in sheet.values():
        for bad in sheet_price.refused:
            refused[(bad.model, bad.row_id, bad.field)] = bad
        kind = sheet_price.kind
        if kind is None or kind in prices:
            continue
        as_of = sheet_price.as_of.isoformat() if sheet_price.as_of else None
        prices[kind] = _price(
            kind, sheet_price.usd_per_gpu_hour, sheet_price.source, as_of, sheet_price.refused
        )
    calibrations: dict[str, Calibration] = {}
    for kind in sorted(prices):
        profile, record = calibration_profile_for(hardware=kind)
        if record is not None:
            calibrations[kind] = Calibration(
                kind, profile, record.id, record.fit_median_ape,
                f"calibration record #{record.id} fitted on this fleet's benchmarks "
                f"({record.created_at:%Y-%m-%d})",
            )  # fmt: skip
        else:
            calibrations[kind] = Calibration(
                kind, profile, None, profile.fit_median_ape,
                f"engine default profile ({profile.source}); no benchmark calibration for {kind}",
            )  # fmt: skip
    deployments = []
    for deployment in ModelDeployment.objects.filter(cluster=cluster).prefetch_related("gpus"):
        mine = tuple(by_id[g.id] for g in deployment.gpus.all() if g.id in by_id)
        kinds = sorted({gpu.kind or f"unknown GPU {gpu.model_name!r}" for gpu in mine})
        problems = []
        if not mine:
            problems.append("no GPUs assigned to it")
        elif len(kinds) > 1:
            problems.append(f"GPUs of several kinds ({', '.join(kinds)}); assess them apart")
        elif any(gpu.kind is None for gpu in mine):
            problems.append(f"GPU {mine[0].model_name!r} is not in the engine's catalog")
        model, model_problem = model_resolve(deployment)
        if model_problem is not None:
            problems.append(model_problem)
        slo, slo_refused = slo_of(deployment)
        min_replicas, rule_refused = min_replicas_of(deployment)
        replicas_refused = stored_refusal(deployment, "replicas", REPLICAS_REFUSED)
        extra = [bad for bad in (rule_refused, replicas_refused) if bad is not None]
        for bad in (*slo_refused, *extra):
            refused[(bad.model, bad.row_id, bad.field)] = bad
            problems.append(f"stored value out of bounds: {bad.text}")
        deployments.append(
            DeploymentFleet(
                id=deployment.id,
                served_name=deployment.served_name,
                model_id=deployment.model_id,
                model=model,
                model_config=(
                    deployment.hf_config
                    if model is not None and model.name == config_model_name(deployment)
                    else None
                ),
                engine_args=dict(deployment.engine_args or {}),
                replicas=deployment.replicas,
                gpus=mine,
                kind=kinds[0] if len(kinds) == 1 and mine[0].kind else None,
                slo=slo,
                problems=tuple(problems),
                min_replicas=min_replicas,
            )
        )
    unknown = tuple(sorted({gpu.model_name for gpu in gpus if gpu.kind is None}))
    return Fleet(
        cluster, gpus, tuple(deployments), prices, calibrations, unknown, tuple(refused.values()),
        offered_kinds(exclude=set(prices)),
    )  # fmt: skip


def offered_kinds(*, exclude: set[str]) -> dict[str, Price]:
    """The price sheet's usable rows for catalog GPU kinds not in `exclude`, by kind."""
    usable, _ = price_rows()
    out: dict[str, Price] = {}
    for row in usable.values():
        try:
            spec = DEFAULT_CATALOG.gpu(row.gpu_kind)
        except CatalogError:
            continue  # an NVML name the catalog does not know: nothing to simulate
        if spec.kind != "gpu" or spec.name in exclude or spec.name in out:
            continue
        out[spec.name] = Price(
            spec.name, float(row.usd_per_gpu_hour), f"{row.source}, {row.as_of:%Y-%m-%d}",
            row.as_of.isoformat(), True,
        )  # fmt: skip
    return dict(sorted(out.items()))
