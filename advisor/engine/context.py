"""The assessment's shared state: resolved deployments, prices, power, and a load-curve cache.

`AssessmentContext(scenario)` resolves each deployment against the catalog (plus the
scenario's own models): its `ModelSpec`, `HardwareSpec`, today's `ReplicaConfig`, its
workload shape (the request sample bootstrapped to the simulation window, seeded from the
scenario's seed and the deployment's position), its load over time, and its SLO targets.
A deployment the catalog cannot resolve (unknown model or GPU, a configuration that does not
fit) gets `problem` set to a message naming the field, and is left out of the search.

`curve(name, config)` simulates a configuration once per assessment and caches it: every
strategy and the planner ask the same cache, so combinations reuse the single-strategy runs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from advisor.engine.capacity import LoadCurve, ReplicaConfig, SloTargets, WorkloadShape, load_curve
from advisor.engine.catalog import (
    DEFAULT_CATALOG,
    GIB,
    Catalog,
    CatalogError,
    HardwareSpec,
    ModelSpec,
    model_from_hf_dict,
    resolve_model,
)
from advisor.engine.energy import POWER, UNKNOWN
from advisor.engine.fleet import Economics
from advisor.engine.perf import CalibrationProfile, ConfigError
from advisor.engine.profiles import DEFAULT_PROFILES, ProfileSet
from advisor.engine.scenario import (
    DeploymentSpec,
    LoadShape,
    PowerEntry,
    PriceEntry,
    Scenario,
    SloSpec,
    WorkloadSpec,
)
from advisor.engine.sim import vllm_default_scheduler
from advisor.engine.specdecode import SpecConfig

if TYPE_CHECKING:
    from advisor.engine.strategies._speculative_priors import Acceptance


class PriceBook:
    """USD per GPU-hour per hardware kind: the scenario's sheet, else the catalog's (flagged)."""

    def __init__(self, prices: dict[str, PriceEntry], catalog: Catalog) -> None:
        self._catalog = catalog
        self._prices: dict[str, PriceEntry] = {}
        self.unknown: list[str] = []
        for key, entry in prices.items():
            try:
                self._prices[catalog.gpu(key).name] = entry
            except CatalogError:
                self.unknown.append(key)

    def entry(self, hardware: HardwareSpec) -> PriceEntry:
        found = self._prices.get(hardware.name)
        if found is not None:
            return found
        return PriceEntry(
            hardware.price_usd_per_hour,
            f"catalog default: {hardware.price_source}",
            defaulted=True,
        )

    def as_dict(self) -> dict[str, PriceEntry]:
        return dict(self._prices)

    def usd_per_gpu_hour(self, hardware: HardwareSpec) -> float:
        return self.entry(hardware).usd_per_gpu_hour


@dataclass(frozen=True, eq=False)
class Resolved:
    """A deployment resolved against the catalog, ready for the strategies."""

    index: int
    spec: DeploymentSpec
    model: ModelSpec
    hardware: HardwareSpec
    baseline: ReplicaConfig
    shape: WorkloadShape
    load: LoadShape
    slo: SloTargets
    profile: CalibrationProfile
    acceptance: Acceptance | None  # measured speculative acceptance, when counters were given
    variant: str = ""  # set on what-if copies (sensitivity): their curves are cached apart

    @property
    def name(self) -> str:
        return self.spec.name


def _seed(base: int, *parts: int) -> int:
    return int(np.random.SeedSequence([base, *parts]).generate_state(1)[0])


class AssessmentContext:
    """Shared state of one assessment run (not shared between runs; no global state)."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.options = scenario.options
        catalog = DEFAULT_CATALOG
        self.model_errors: dict[str, str] = {}
        for name, config in scenario.models.items():
            try:
                catalog = catalog.with_model(model_from_hf_dict(config, name=name))
            except CatalogError as exc:
                self.model_errors[name] = str(exc)
        self.catalog = catalog
        self.profiles: ProfileSet = DEFAULT_PROFILES.with_profiles(scenario.profiles)
        self.prices = PriceBook(dict(scenario.prices), catalog)
        self.power_overrides: dict[str, PowerEntry] = {}
        for key, entry in scenario.power.items():
            try:
                self.power_overrides[catalog.gpu(key).name] = entry
            except CatalogError:
                self.prices.unknown.append(f"power.{key}")
        self._curves: dict[tuple[str, str, ReplicaConfig], LoadCurve] = {}
        self.resolved: dict[str, Resolved] = {}
        self.problems: dict[str, str] = {}
        for index, deployment in enumerate(scenario.deployments):
            try:
                self.resolved[deployment.name] = self._resolve(index, deployment)
            except (CatalogError, ConfigError, ValueError) as exc:
                text = str(exc)
                if text.startswith("gpu:"):
                    text = "hardware:" + text.removeprefix("gpu:")
                self.problems[deployment.name] = f"deployments[{index}].{text}"

    # --- resolution -------------------------------------------------------------------------

    def _resolve(self, index: int, spec: DeploymentSpec) -> Resolved:
        from advisor.engine.strategies._speculative_priors import measured_acceptance

        try:
            model = self.catalog.model(spec.model)
        except CatalogError:
            if spec.model.endswith(".json"):
                model = resolve_model(spec.model, self.catalog)
            else:
                raise
        hardware = self.catalog.gpu(spec.hardware)
        self.catalog.quant(spec.weight_dtype)
        args = spec.engine_args
        default = vllm_default_scheduler(hardware)
        seqs = args.max_num_seqs or default.max_num_seqs
        tokens = args.max_num_batched_tokens or max(default.max_num_batched_tokens, seqs)
        acceptance = measured_acceptance(spec)
        spec_config = None
        if args.speculative_config is not None:
            from advisor.engine.strategies._speculative_priors import drafter_for, prior_for

            current = args.speculative_config
            drafter = drafter_for(current.method, model, current.model, self.catalog)
            use = acceptance if acceptance and acceptance.method == current.method else None
            alpha = (use or prior_for(current.method, model)).alpha
            spec_config = SpecConfig(drafter, current.num_speculative_tokens, alpha)
        config = ReplicaConfig(
            model=model,
            hardware=hardware,
            weight_dtype=self.catalog.quant(spec.weight_dtype).name,
            tensor_parallel=spec.tensor_parallel,
            max_num_seqs=seqs,
            max_num_batched_tokens=tokens,
            enable_chunked_prefill=args.enable_chunked_prefill,
            enable_prefix_caching=args.enable_prefix_caching,
            kv_offload_bytes=round(args.kv_offload_gib * GIB),
            kv_cache_dtype=args.kv_cache_dtype,
            block_size=args.block_size,
            gpu_memory_utilization=args.gpu_memory_utilization,
            max_model_len=args.max_model_len,
            batching=spec.batching,
            static_batch_size=spec.static_batch_size,
            static_timeout_s=spec.static_timeout_s,
            spec=spec_config,
        )
        config.deployment()  # raises ConfigError naming the field if today's setup cannot fit
        shape = WorkloadShape.of(
            spec.workload.sample,
            num_requests=self.options.sim_requests,
            seed=_seed(self.options.seed, index, 1),
        )
        profile = self.profiles.lookup(hardware.name, self.options.engine)
        return Resolved(
            index,
            spec,
            model,
            hardware,
            config,
            shape,
            spec.workload.load_shape,
            SloTargets(spec.slo.ttft_p95_s, spec.slo.tpot_p95_s),
            profile,
            acceptance,
        )

    # --- shared services --------------------------------------------------------------------

    def curve(self, item: Resolved, config: ReplicaConfig) -> LoadCurve:
        """The load curve of `config` on this deployment's requests (simulated once)."""
        key = (item.name, item.variant, config)
        found = self._curves.get(key)
        if found is None:
            profile = item.profile
            if config.hardware.name != item.hardware.name:
                profile = self.profiles.lookup(config.hardware.name, self.options.engine)
            found = load_curve(
                config, item.shape, profile, item.slo, seed=_seed(self.options.seed, item.index, 2)
            )
            self._curves[key] = found
        return found

    @property
    def curves_simulated(self) -> int:
        return len(self._curves)

    def power(self, hardware: HardwareSpec) -> PowerEntry:
        return self.power_overrides.get(hardware.name) or POWER.get(hardware.name, UNKNOWN)

    def economics(self, item: Resolved, config: ReplicaConfig) -> Economics:
        from advisor.engine.strategies._quality import quality_of

        power = self.power(config.hardware)
        quality = quality_of(item.spec, config.weight_dtype, config.kv_cache_dtype)
        return Economics(
            usd_per_gpu_hour=self.prices.usd_per_gpu_hour(config.hardware),
            idle_w=power.idle_w,
            max_w=power.max_w,
            hours_per_month=self.options.hours_per_month,
            quality_delta_points=quality.delta_points,
            max_quality_loss_points=item.spec.slo.max_quality_loss_points,
        )

    def with_spec(self, config: ReplicaConfig, spec: SpecConfig | None) -> ReplicaConfig:
        return replace(config, spec=spec)


def context_for(
    workload: WorkloadSpec,
    deployment: DeploymentSpec,
    prices: PriceBook | None,
    slo: SloSpec,
    context: AssessmentContext | None,
) -> tuple[AssessmentContext, Resolved]:
    """The context a strategy runs in: the given one, or one built for this deployment alone.

    The arguments win over what the context holds (a strategy may be called with another
    workload or SLO than the scenario's, e.g. by the planner's sensitivity analysis).
    """
    spec = replace(deployment, workload=workload, slo=slo)
    if context is not None and deployment.name in context.resolved:
        held = context.resolved[deployment.name]
        if held.spec == spec:
            return context, held
        others = tuple(
            spec if d.name == deployment.name else d for d in context.scenario.deployments
        )
        built = AssessmentContext(replace(context.scenario, deployments=others))
    else:
        scenario = Scenario(deployments=(spec,))
        if prices is not None:
            scenario = replace(scenario, prices=prices.as_dict())
        built = AssessmentContext(scenario)
    if deployment.name in built.problems:
        raise ConfigError(built.problems[deployment.name])
    return built, built.resolved[deployment.name]
