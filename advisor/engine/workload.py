"""Request workloads: arrival times and token lengths as numpy arrays, generators and loaders.

A `Workload` is what the simulator serves and what the benchmark client replays against a real
server: request `i` is sent at `arrival_s[i]` with `prompt_tokens[i]` input tokens and asks for
`output_tokens[i]` generated tokens. `max_concurrency` (optional) caps the requests in flight
on the client side like `vllm bench serve --max-concurrency`: a request whose arrival time has
come waits until fewer than that many are in flight. All arrivals at 0 with a cap of C is a
closed loop of C users.

Generators take a seeded `numpy.random.Generator` and never touch global random state:

- `poisson_arrivals_s`, `gamma_arrivals_s` (burstiness as `vllm bench serve --burstiness`:
  gamma inter-arrivals with shape = burstiness and mean 1/rate; 1.0 is Poisson, lower is
  burstier).
- `uniform_lengths` (`--random-range-ratio` style) and `synthetic_workload` that combines both.
- `closed_loop_workload`: N requests, C users, fixed or uniform lengths.
- `load_azure_trace` reads the Azure LLM inference 2023 CSVs (`TIMESTAMP,ContextTokens,
  GeneratedTokens`, CRLF); malformed rows raise `WorkloadError` naming the line and column.
- `resample_workload` bootstraps a trace to any number of requests, keeping the joint
  (prompt, output) distribution and the inter-arrival distribution (so its burstiness), and
  optionally rescales it to a target rate; `Workload.time_scaled` stretches or compresses time.

Prefix reuse: `Workload.prefix` (optional) holds each request's prompt block hashes as a
`PrefixBlocks` (a ragged array: one flat int64 array of hashes and per-request offsets, with
the block size in tokens; Mooncake traces use 512-token blocks). Block j of a request hashes
its whole prefix up to the end of block j, so two requests share their first k blocks exactly
when their first k hashes are equal. `advisor.engine.prefix_cache` turns them into cached
tokens per request.

Only numpy, pandas and the standard library are used, so this module can be reused outside
the engine (e.g. by a load generator).
"""

from __future__ import annotations

import gzip
import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


class WorkloadError(ValueError):
    """A workload or trace file is malformed; the message names the field, line or column."""


def _frozen(array: npt.ArrayLike, dtype: type[np.generic], name: str) -> npt.NDArray[np.generic]:
    try:
        out = np.array(array, dtype=dtype, copy=True)
    except (TypeError, ValueError) as exc:
        raise WorkloadError(f"{name}: cannot convert to {np.dtype(dtype).name}: {exc}") from exc
    if out.ndim != 1:
        raise WorkloadError(f"{name}: expected a 1-D array, got shape {out.shape}")
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class PrefixBlocks:
    """Prompt block hashes per request: request i's are `hashes[offsets[i]:offsets[i + 1]]`.

    `block_tokens` is the block size the hashes were taken over (Mooncake: 512). A request's
    last block may be partial (Mooncake hashes ceil(prompt / block) blocks); only full blocks
    can be reused. Arrays are copied and made read-only.
    """

    block_tokens: int
    hashes: IntArray
    offsets: IntArray

    def __post_init__(self) -> None:
        if (
            isinstance(self.block_tokens, bool)
            or not isinstance(self.block_tokens, int)
            or self.block_tokens < 1
        ):
            raise WorkloadError(
                f"prefix.block_tokens: must be an integer >= 1, got {self.block_tokens!r}"
            )
        hashes = _frozen(self.hashes, np.int64, "prefix.hashes")
        offsets = _frozen(self.offsets, np.int64, "prefix.offsets")
        if offsets.shape[0] < 1 or offsets[0] != 0:
            raise WorkloadError("prefix.offsets: must start with 0 (one more entry than requests)")
        back = np.flatnonzero(np.diff(offsets) < 0)
        if back.size:
            raise WorkloadError(f"prefix.offsets: decreases at request {int(back[0])}")
        if offsets[-1] != hashes.shape[0]:
            raise WorkloadError(
                f"prefix.offsets: ends at {int(offsets[-1])}, expected the number of hashes "
                f"{hashes.shape[0]}"
            )
        object.__setattr__(self, "hashes", hashes)
        object.__setattr__(self, "offsets", offsets)

    @classmethod
    def from_lists(cls, block_tokens: int, rows: list[list[int]]) -> PrefixBlocks:
        """From one list of block hashes per request (e.g. Mooncake's `hash_ids`)."""
        lengths = np.array([len(row) for row in rows], dtype=np.int64)
        offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
        flat = [value for row in rows for value in row]
        return cls(block_tokens, np.array(flat, dtype=np.int64), offsets)

    @cached_property
    def dense_ids(self) -> IntArray:
        """The hashes renumbered 0..m-1 (equal hashes, equal ids); computed once, read-only."""
        _unique, inverse = np.unique(self.hashes, return_inverse=True)
        out = inverse.astype(np.int64).reshape(-1)
        out.setflags(write=False)
        return out

    @property
    def num_requests(self) -> int:
        return int(self.offsets.shape[0] - 1)

    @property
    def blocks_per_request(self) -> IntArray:
        return np.diff(self.offsets)

    def row(self, index: int) -> IntArray:
        return self.hashes[self.offsets[index] : self.offsets[index + 1]]

    def head(self, num_requests: int) -> PrefixBlocks:
        offsets = self.offsets[: max(num_requests, 0) + 1]
        return PrefixBlocks(self.block_tokens, self.hashes[: offsets[-1]], offsets)

    def bootstrap(self, indices: IntArray) -> PrefixBlocks:
        """The rows at `indices` drawn as new requests of the same shape (for resampling).

        A row drawn again stands for another request with the same lengths, not a retry of
        the same prompt: its blocks that only this row holds in the source (its own text,
        such as a user's question) get fresh hashes, so the copy cannot hit them in a cache;
        blocks that several source rows hold (a shared system prompt, an earlier turn of the
        conversation) keep theirs. The first draw of a row keeps all of its hashes.
        """
        indices = np.asarray(indices, dtype=np.int64)
        positions, offsets = self._gather(indices)
        if positions.shape[0] == 0:
            return PrefixBlocks(self.block_tokens, self.hashes[positions], offsets)
        holders = np.bincount(self.dense_ids, minlength=int(self.dense_ids.max()) + 1)
        order = np.argsort(indices, kind="stable")
        sorted_picks = indices[order]
        starts = np.flatnonzero(np.r_[True, sorted_picks[1:] != sorted_picks[:-1]])
        rank_sorted = np.arange(indices.shape[0]) - np.repeat(
            starts, np.diff(np.r_[starts, indices.shape[0]])
        )
        repeat = np.empty(indices.shape[0], dtype=np.int64)
        repeat[order] = rank_sorted
        row_of = np.repeat(np.arange(indices.shape[0]), np.diff(offsets))
        private = (holders[self.dense_ids[positions]] == 1) & (repeat[row_of] > 0)
        hashes = np.array(self.hashes[positions])
        count = int(private.sum())
        top, bottom = int(self.hashes.max()), int(self.hashes.min())
        if top < np.iinfo(np.int64).max - count:
            hashes[private] = top + 1 + np.arange(count, dtype=np.int64)
        else:
            hashes[private] = bottom - 1 - np.arange(count, dtype=np.int64)
        return PrefixBlocks(self.block_tokens, hashes, offsets)

    def _gather(self, indices: IntArray) -> tuple[IntArray, IntArray]:
        """Flat positions in `hashes` of the rows at `indices`, row after row, and the
        offsets of those rows in the gathered array."""
        lengths = self.blocks_per_request[indices]
        offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
        positions = np.repeat(self.offsets[:-1][indices] - offsets[:-1], lengths) + np.arange(
            int(offsets[-1]), dtype=np.int64
        )
        return positions, offsets

    def take(self, indices: IntArray) -> PrefixBlocks:
        """The rows at `indices` (a ragged gather; indices may repeat)."""
        positions, offsets = self._gather(indices)
        return PrefixBlocks(self.block_tokens, self.hashes[positions], offsets)


@dataclass(frozen=True, eq=False)
class Workload:
    """Requests to serve: arrival times (s, non-decreasing, >= 0) and token lengths (>= 1 each).

    Arrays are copied and made read-only on construction, so a workload can be shared safely.
    `max_concurrency` None means open loop (requests are sent at their arrival times).
    `prefix` None means the prompts' block hashes are unknown (prefix reuse cannot be modelled).
    """

    arrival_s: FloatArray
    prompt_tokens: IntArray
    output_tokens: IntArray
    max_concurrency: int | None = None
    name: str = field(default="workload")
    prefix: PrefixBlocks | None = None

    def __post_init__(self) -> None:
        arrival = _frozen(self.arrival_s, np.float64, "arrival_s")
        prompt = _frozen(self.prompt_tokens, np.int64, "prompt_tokens")
        output = _frozen(self.output_tokens, np.int64, "output_tokens")
        n = arrival.shape[0]
        if prompt.shape[0] != n or output.shape[0] != n:
            raise WorkloadError(
                "arrival_s, prompt_tokens and output_tokens must have the same length "
                f"(got {n}, {prompt.shape[0]}, {output.shape[0]})"
            )
        if n and not np.all(np.isfinite(arrival)):
            raise WorkloadError(
                f"arrival_s: not finite at index {int(np.argmin(np.isfinite(arrival)))}"
            )
        if n and arrival[0] < 0:
            raise WorkloadError("arrival_s: must be >= 0")
        if n > 1:
            back = np.flatnonzero(np.diff(arrival) < 0)
            if back.size:
                raise WorkloadError(
                    f"arrival_s: decreases at index {int(back[0]) + 1} (sort first)"
                )
        if n and prompt.min() < 1:
            raise WorkloadError(f"prompt_tokens: must be >= 1 (index {int(np.argmin(prompt))})")
        if n and output.min() < 1:
            raise WorkloadError(f"output_tokens: must be >= 1 (index {int(np.argmin(output))})")
        if self.max_concurrency is not None and (
            isinstance(self.max_concurrency, bool) or int(self.max_concurrency) < 1
        ):
            raise WorkloadError(
                f"max_concurrency: must be >= 1 or None, got {self.max_concurrency}"
            )
        if self.prefix is not None:
            _check_prefix(self.prefix, np.asarray(prompt, dtype=np.int64))
        object.__setattr__(self, "arrival_s", arrival)
        object.__setattr__(self, "prompt_tokens", prompt)
        object.__setattr__(self, "output_tokens", output)

    @property
    def num_requests(self) -> int:
        return int(self.arrival_s.shape[0])

    def __len__(self) -> int:
        return self.num_requests

    @property
    def duration_s(self) -> float:
        """Time from the first to the last arrival (0 for fewer than two requests)."""
        if self.num_requests < 2:
            return 0.0
        return float(self.arrival_s[-1] - self.arrival_s[0])

    @property
    def mean_rate_rps(self) -> float:
        """Mean arrival rate over the trace span (inf when all requests arrive at once)."""
        if self.num_requests < 2:
            return math.inf
        span = self.duration_s
        return math.inf if span <= 0 else (self.num_requests - 1) / span

    def time_scaled(self, factor: float) -> Workload:
        """Arrival times multiplied by `factor` (0.5 doubles the rate), relative to the first."""
        if not (factor >= 0 and math.isfinite(factor)):
            raise WorkloadError(f"factor: must be finite and >= 0, got {factor}")
        start = self.arrival_s[0] if self.num_requests else 0.0
        return Workload(
            (self.arrival_s - start) * factor,
            self.prompt_tokens,
            self.output_tokens,
            self.max_concurrency,
            f"{self.name} x{factor:g} time",
            self.prefix,
        )

    def with_rate(self, rate_rps: float) -> Workload:
        """Time-scaled so that the mean arrival rate is `rate_rps` (inf: all arrive at 0)."""
        if not rate_rps > 0:
            raise WorkloadError(f"rate_rps: must be > 0, got {rate_rps}")
        current = self.mean_rate_rps
        if math.isinf(rate_rps) or math.isinf(current):
            factor = 0.0 if math.isinf(rate_rps) else 1.0
        else:
            factor = current / rate_rps
        return self.time_scaled(factor)

    def with_max_concurrency(self, max_concurrency: int | None) -> Workload:
        return Workload(
            self.arrival_s,
            self.prompt_tokens,
            self.output_tokens,
            max_concurrency,
            self.name,
            self.prefix,
        )

    def select(self, which: npt.ArrayLike) -> Workload:
        """The requests picked by a boolean mask or index array (order kept; e.g. a router)."""
        pick = np.asarray(which)
        if pick.dtype == np.bool_ and pick.shape != self.arrival_s.shape:
            raise WorkloadError(f"which: mask of {pick.shape[0]} for {self.num_requests} requests")
        indices = np.sort(np.flatnonzero(pick) if pick.dtype == np.bool_ else pick.astype(np.int64))
        return Workload(
            self.arrival_s[indices],
            self.prompt_tokens[indices],
            self.output_tokens[indices],
            self.max_concurrency,
            self.name,
            None if self.prefix is None else self.prefix.take(indices),
        )

    def head(self, num_requests: int) -> Workload:
        """The first `num_requests` requests."""
        return Workload(
            self.arrival_s[:num_requests],
            self.prompt_tokens[:num_requests],
            self.output_tokens[:num_requests],
            self.max_concurrency,
            self.name,
            None if self.prefix is None else self.prefix.head(num_requests),
        )


def _check_prefix(prefix: PrefixBlocks, prompt: IntArray) -> None:
    if not isinstance(prefix, PrefixBlocks):
        raise WorkloadError(f"prefix: expected PrefixBlocks or None, got {type(prefix).__name__}")
    if prefix.num_requests != prompt.shape[0]:
        raise WorkloadError(
            f"prefix: block hashes for {prefix.num_requests} requests, workload has "
            f"{prompt.shape[0]}"
        )
    most = -(-prompt // prefix.block_tokens)
    over = np.flatnonzero(prefix.blocks_per_request > most)
    if over.size:
        row = int(over[0])
        raise WorkloadError(
            f"prefix.hashes: request {row} has {int(prefix.blocks_per_request[row])} blocks of "
            f"{prefix.block_tokens} tokens for a {int(prompt[row])}-token prompt "
            f"(at most {int(most[row])})"
        )


def _check_count(num_requests: int) -> None:
    if isinstance(num_requests, bool) or int(num_requests) != num_requests or num_requests < 0:
        raise WorkloadError(f"num_requests: must be an integer >= 0, got {num_requests!r}")


def gamma_arrivals_s(
    rng: np.random.Generator, *, num_requests: int, rate_rps: float, burstiness: float = 1.0
) -> FloatArray:
    """Arrival times with gamma inter-arrivals (mean 1/rate, shape `burstiness`); first at 0.

    burstiness 1.0 gives a Poisson process (exponential gaps); < 1 is burstier, > 1 smoother,
    as `vllm bench serve --burstiness`. rate_rps = inf sends everything at time 0.
    """
    _check_count(num_requests)
    if not rate_rps > 0:
        raise WorkloadError(f"rate_rps: must be > 0 (or inf), got {rate_rps}")
    if not (burstiness > 0 and math.isfinite(burstiness)):
        raise WorkloadError(f"burstiness: must be finite and > 0, got {burstiness}")
    if num_requests == 0:
        return np.zeros(0)
    if math.isinf(rate_rps):
        return np.zeros(num_requests)
    gaps = rng.gamma(shape=burstiness, scale=1.0 / (rate_rps * burstiness), size=num_requests - 1)
    return np.concatenate(([0.0], np.cumsum(gaps)))


def poisson_arrivals_s(
    rng: np.random.Generator, *, num_requests: int, rate_rps: float
) -> FloatArray:
    """Poisson arrivals (exponential gaps with mean 1/rate); the first request at 0."""
    return gamma_arrivals_s(rng, num_requests=num_requests, rate_rps=rate_rps, burstiness=1.0)


def uniform_lengths(
    rng: np.random.Generator, *, num_requests: int, mean_tokens: int, range_ratio: float = 0.0
) -> IntArray:
    """Token lengths uniform on [mean(1-r), mean(1+r)] (integers), as `--random-range-ratio`."""
    _check_count(num_requests)
    if not 0.0 <= range_ratio < 1.0:
        raise WorkloadError(f"range_ratio: must be in [0, 1), got {range_ratio}")
    if mean_tokens < 0:
        raise WorkloadError(f"mean_tokens: must be >= 0, got {mean_tokens}")
    low = math.floor(mean_tokens * (1.0 - range_ratio))
    high = math.ceil(mean_tokens * (1.0 + range_ratio))
    if range_ratio == 0.0 or low == high:
        return np.full(num_requests, mean_tokens, dtype=np.int64)
    return rng.integers(low, high + 1, size=num_requests, dtype=np.int64)


def synthetic_workload(
    rng: np.random.Generator,
    *,
    num_requests: int,
    rate_rps: float,
    prompt_tokens: int,
    output_tokens: int,
    burstiness: float = 1.0,
    range_ratio: float = 0.0,
    max_concurrency: int | None = None,
) -> Workload:
    """Gamma/Poisson arrivals at `rate_rps` with fixed or uniform lengths (`vllm bench serve`)."""
    if output_tokens < 1:
        raise WorkloadError(f"output_tokens: must be >= 1, got {output_tokens}")
    arrival = gamma_arrivals_s(
        rng, num_requests=num_requests, rate_rps=rate_rps, burstiness=burstiness
    )
    if prompt_tokens < 1:
        raise WorkloadError(f"prompt_tokens: must be >= 1, got {prompt_tokens}")
    prompt = np.maximum(
        uniform_lengths(
            rng, num_requests=num_requests, mean_tokens=prompt_tokens, range_ratio=range_ratio
        ),
        1,
    )
    output = np.maximum(
        uniform_lengths(
            rng, num_requests=num_requests, mean_tokens=output_tokens, range_ratio=range_ratio
        ),
        1,
    )
    name = f"rate {rate_rps:g} rps, burstiness {burstiness:g}, {prompt_tokens}/{output_tokens} tok"
    return Workload(arrival, prompt, output, max_concurrency, name)


def closed_loop_workload(
    *,
    num_requests: int,
    concurrency: int,
    prompt_tokens: int,
    output_tokens: int,
    rng: np.random.Generator | None = None,
    range_ratio: float = 0.0,
) -> Workload:
    """`concurrency` users each sending the next request as soon as their previous one ends.

    Lengths are fixed, or uniform with `range_ratio` (then `rng` is required).
    """
    if range_ratio and rng is None:
        raise WorkloadError("rng: required when range_ratio > 0")
    generator = rng if rng is not None else np.random.default_rng(0)
    workload = synthetic_workload(
        generator,
        num_requests=num_requests,
        rate_rps=math.inf,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        range_ratio=range_ratio,
        max_concurrency=concurrency,
    )
    name = f"closed loop x{concurrency}, {prompt_tokens}/{output_tokens} tok"
    return Workload(
        workload.arrival_s, workload.prompt_tokens, workload.output_tokens, concurrency, name
    )


def _bad_rows(mask: npt.NDArray[np.bool_], column: str, values: pd.Series, why: str) -> None:
    bad = np.flatnonzero(mask)
    if bad.size:
        first = int(bad[0])
        # +2: one for the header line, one because file lines count from 1
        raise WorkloadError(
            f"line {first + 2}, column {column}: {why} (got {values.iloc[first]!r}); "
            f"{bad.size} bad row(s) in all"
        )


def load_azure_trace(path: str | Path, *, name: str | None = None) -> Workload:
    """Read an Azure LLM inference trace CSV (2023 schema) into a `Workload`.

    Arrival times are seconds after the first request; rows are sorted by time (stable).
    Raises `WorkloadError` naming the file line and column of the first malformed value.
    """
    source = Path(path)
    try:
        frame = pd.read_csv(source, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError as exc:
        raise WorkloadError(f"{source}: no such file") from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise WorkloadError(f"{source}: not a readable CSV: {exc}") from exc
    frame.columns = [str(column).strip() for column in frame.columns]
    absent = [column for column in AZURE_COLUMNS if column not in frame.columns]
    if absent:
        raise WorkloadError(
            f"{source}: missing column(s) {absent}; expected header {','.join(AZURE_COLUMNS)}"
        )
    stamps = pd.to_datetime(frame["TIMESTAMP"].str.strip(), format="ISO8601", errors="coerce")
    _bad_rows(stamps.isna().to_numpy(), "TIMESTAMP", frame["TIMESTAMP"], "not a timestamp")
    columns: dict[str, IntArray] = {}
    for column in AZURE_COLUMNS[1:]:
        raw = frame[column].str.strip()
        numbers = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(numbers) | (numbers != np.floor(numbers))
        _bad_rows(bad, column, raw, "not an integer")
        _bad_rows(numbers < 0, column, raw, "must be >= 0")
        columns[column] = numbers.astype(np.int64)
    for column in AZURE_COLUMNS[1:]:
        _bad_rows(columns[column] < 1, column, frame[column], "must be >= 1")
    seconds = np.asarray((stamps - stamps.min()).dt.total_seconds(), dtype=np.float64)
    order = np.argsort(seconds, kind="stable")
    return Workload(
        seconds[order],
        columns["ContextTokens"][order],
        columns["GeneratedTokens"][order],
        None,
        name or source.stem,
    )


MOONCAKE_BLOCK_TOKENS = 512  # Mooncake FAST'25 traces: hash_ids are over 512-token blocks


def load_mooncake_trace(path: str | Path, *, name: str | None = None) -> Workload:
    """Read a Mooncake trace (JSON lines, optionally gzipped) into a `Workload` with hashes.

    Each line: `timestamp` (ms from the trace's start), `input_length`, `output_length` and
    `hash_ids` (the prompt's 512-token block hashes; a trailing partial block has one too).
    Arrival times are seconds after the first request, in the file's order (non-decreasing).
    Raises `WorkloadError` naming the line and field of the first malformed value.
    """
    source = Path(path)
    try:
        raw = source.read_bytes()
    except FileNotFoundError as exc:
        raise WorkloadError(f"{source}: no such file") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise WorkloadError(f"{source}: not a readable gzip file: {exc}") from exc
    arrival, prompt, output, rows = [], [], [], []
    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{source.name} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise WorkloadError(f"{where}: not JSON: {exc.msg}") from exc
        if not isinstance(record, dict):
            raise WorkloadError(f"{where}: expected an object")
        for key, least in (("timestamp", 0), ("input_length", 1), ("output_length", 1)):
            value = record.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise WorkloadError(
                    f"{where}, {key}: expected an integer >= {least}, got {value!r}"
                )
        hashes = record.get("hash_ids", [])
        if not isinstance(hashes, list) or not all(
            isinstance(h, int) and not isinstance(h, bool) for h in hashes
        ):
            raise WorkloadError(f"{where}, hash_ids: expected a list of integers")
        arrival.append(record["timestamp"] / 1000.0)
        prompt.append(record["input_length"])
        output.append(record["output_length"])
        rows.append(hashes)
    if not arrival:
        raise WorkloadError(f"{source}: no requests")
    seconds = np.asarray(arrival, dtype=np.float64)
    back = np.flatnonzero(np.diff(seconds) < 0)
    if back.size:
        raise WorkloadError(
            f"{source.name} line {int(back[0]) + 2}, timestamp: earlier than the line before"
        )
    return Workload(
        seconds - seconds[0],
        np.asarray(prompt, dtype=np.int64),
        np.asarray(output, dtype=np.int64),
        None,
        name or source.name.split(".")[0],
        prefix=PrefixBlocks.from_lists(MOONCAKE_BLOCK_TOKENS, rows),
    )


def resample_workload(
    workload: Workload,
    rng: np.random.Generator,
    *,
    num_requests: int,
    rate_rps: float | None = None,
) -> Workload:
    """Bootstrap `workload` to `num_requests` requests with the same shape.

    (prompt, output) pairs are drawn jointly with replacement; inter-arrival gaps are drawn
    with replacement from the source's gaps (keeping their distribution, hence burstiness),
    then the whole trace is time-scaled to `rate_rps` when given. Prompt block hashes go
    with their rows (`PrefixBlocks.bootstrap`: a row drawn twice does not hit its own
    private blocks, or a 1M-request sample of 20k prompts would look 98% cached).
    """
    _check_count(num_requests)
    if workload.num_requests == 0:
        raise WorkloadError("workload: cannot resample an empty workload")
    pick = rng.integers(0, workload.num_requests, size=num_requests)
    if workload.num_requests > 1:
        gaps = np.diff(workload.arrival_s)
        drawn = gaps[rng.integers(0, gaps.shape[0], size=max(num_requests - 1, 0))]
        arrival = np.concatenate(([0.0], np.cumsum(drawn)))[:num_requests].astype(np.float64)
    else:
        arrival = np.zeros(num_requests)
    out = Workload(
        arrival,
        workload.prompt_tokens[pick],
        workload.output_tokens[pick],
        workload.max_concurrency,
        f"{workload.name} resampled to {num_requests}",
        None if workload.prefix is None else workload.prefix.bootstrap(pick),
    )
    return out.with_rate(rate_rps) if rate_rps is not None else out
