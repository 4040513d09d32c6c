"""The agent's main loop: periodic tasks on one thread, delivery and the proxy on their own.

Tasks are pluggable (`PeriodicTask`: a name, an interval and a callable), so later work (the
node controller that pulls the desired config and reconciles the local vLLM) adds a task
instead of changing the loop. Built-in tasks: `sample` (every sampler, each
`sample_interval_s`), `host` (host facts, each `host_interval_s`) and `seal` (close the
current batch into the spool, each `push_interval_s`). A task that raises is logged and
retried at its next tick; it never stops the others. With a journal, each record is written
to disk as it is collected and a killed run's open batch is sealed at the next start
(`probes.agent.journal`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from probes.agent.batch import BatchBuilder
from probes.agent.config import AgentConfig
from probes.agent.journal import Journal
from probes.agent.prefix_hashes import PrefixHasher
from probes.agent.proxy import RecordingProxy
from probes.agent.pusher import Pusher
from probes.agent.samplers import Observations, Sampler
from probes.agent.samplers.dcgm import merge_gpu_samples
from probes.agent.spool import Spool

log = logging.getLogger(__name__)


@dataclass
class PeriodicTask:
    name: str
    interval_s: float
    run: Callable[[float], None]
    next_due: float = 0.0  # monotonic seconds


@dataclass
class AgentStats:
    rounds: int = 0
    gpu_samples: int = 0
    engine_samples: int = 0
    requests: int = 0
    batches_sealed: int = 0
    records_sealed: int = 0
    records_replayed: int = 0  # from the journal of a run that did not stop cleanly
    task_errors: dict[str, int] = field(default_factory=dict)


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        samplers: Sequence[Sampler],
        host_sampler: Sampler,
        spool: Spool,
        pusher: Pusher | None,
        journal: Journal | None = None,
    ) -> None:
        self.config = config
        self.journal = journal
        self.samplers = list(samplers)
        self.host_sampler = host_sampler
        self.spool = spool
        self.pusher = pusher
        self.builder = BatchBuilder(journal)
        self.stats = AgentStats()
        self.proxy: RecordingProxy | None = None
        self.hasher: PrefixHasher | None = None
        self._stop = threading.Event()
        self.tasks = [
            PeriodicTask("sample", config.sample_interval_s, self.sample_round),
            PeriodicTask("host", config.host_interval_s, self.host_round),
            PeriodicTask("seal", config.push_interval_s, self.seal),
        ]

    def add_task(self, task: PeriodicTask) -> None:
        """Plug in another periodic task (e.g. a node controller)."""
        self.tasks.append(task)

    def start_proxy(self) -> int:
        proxy_config = self.config.proxy
        assert proxy_config is not None
        if proxy_config.prefix_hashes:
            self.hasher = PrefixHasher(
                proxy_config.upstream,
                self.record_request,
                block_tokens=proxy_config.block_tokens,
                queue_size=proxy_config.hash_queue,
                max_prompt_bytes=proxy_config.max_prompt_bytes,
                timeout_s=self.config.http_timeout_s,
            )
            self.hasher.start()
        self.proxy = RecordingProxy(
            proxy_config.upstream,
            self.record_request,
            listen_host=proxy_config.listen_host,
            listen_port=proxy_config.listen_port,
            hasher=self.hasher,
        )
        port = self.proxy.start()
        log.info("recording proxy on %s:%d -> %s", proxy_config.listen_host, port,
                 proxy_config.upstream)  # fmt: skip
        return port

    def record_request(self, row: dict[str, Any]) -> None:
        self.builder.add_request(row)
        self.stats.requests += 1

    # -- tasks -----------------------------------------------------------------------------

    def sample_round(self, now_s: float) -> None:
        combined = Observations()
        nvml_samples: list[dict[str, Any]] = []
        dcgm_samples: list[dict[str, Any]] = []
        for sampler in self.samplers:
            observations = sampler.sample(now_s)
            for note in observations.notes:
                log.warning("%s: %s", sampler.name, note)
            if sampler.name == "nvml":
                nvml_samples = observations.gpu_samples
            elif sampler.name == "dcgm":
                dcgm_samples = observations.gpu_samples
            observations.gpu_samples = []
            observations.notes = []
            combined.extend(observations)
        combined.gpu_samples = merge_gpu_samples(nvml_samples, dcgm_samples)
        self.builder.add(combined)
        self.stats.rounds += 1
        self.stats.gpu_samples += len(combined.gpu_samples)
        self.stats.engine_samples += len(combined.engine_samples)
        if self.builder.full():
            self.seal(now_s)

    def host_round(self, now_s: float) -> None:
        self.builder.add(self.host_sampler.sample(now_s))

    def seal(self, now_s: float) -> None:
        sealed = self.builder.seal(self._agent_metadata())
        self.spool.put(sealed.batch_id, sealed.records, sealed.body_gz)
        if self.journal is not None:
            self.journal.discard(sealed.batch_id)
        self.stats.batches_sealed += 1
        self.stats.records_sealed += sealed.records

    def replay_journal(self) -> None:
        """Seal into the spool the open batches a killed run left in its journal."""
        if self.journal is None:
            return
        for batch_id, entries in self.journal.left_behind():
            if not self.spool.holds(batch_id):  # else it was sealed just before the kill
                builder = BatchBuilder()
                builder.replay(entries)
                sealed = builder.seal(self._agent_metadata(), batch_id=batch_id)
                if sealed.records:
                    self.spool.put(sealed.batch_id, sealed.records, sealed.body_gz)
                    self.stats.records_replayed += sealed.records
                    log.warning(
                        "%d records of batch %s were left in the journal by a run that did "
                        "not stop cleanly: sealed now", sealed.records, batch_id,
                    )  # fmt: skip
            self.journal.discard(batch_id)

    def _agent_metadata(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "dropped_records": self.spool.dropped_records,
            "dropped_batches": self.spool.dropped_batches,
        }
        if self.hasher is not None:
            metadata["dropped_prefix_hashes"] = self.hasher.stats.dropped
        return metadata

    # -- loop ------------------------------------------------------------------------------

    def run(self) -> None:
        """Run until `stop()`; then seal what is left and let the pusher drain the spool."""
        self.replay_journal()
        if self.pusher is not None:
            self.pusher.start()
        started = time.monotonic()
        for task in self.tasks:
            task.next_due = started
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                for task in self.tasks:
                    if now >= task.next_due:
                        self._run_task(task)
                        # Fixed rate: skip ticks missed while busy instead of bunching them.
                        task.next_due += task.interval_s * max(
                            1, int((now - task.next_due) // task.interval_s) + 1
                        )
                wake = min(task.next_due for task in self.tasks)
                self._stop.wait(timeout=max(0.0, wake - time.monotonic()))
        finally:
            self.shutdown()

    def stop(self) -> None:
        self._stop.set()

    def shutdown(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        if self.hasher is not None:
            self.hasher.stop()  # records the rows still waiting for their hashes
        self._run_task(PeriodicTask("seal", 0.0, self.seal))
        if self.journal is not None:
            self.journal.close()
        if self.pusher is not None:
            self.pusher.stop(self.config.drain_timeout_s)
        for sampler in [*self.samplers, self.host_sampler]:
            sampler.close()

    def _run_task(self, task: PeriodicTask) -> None:
        try:
            task.run(time.time())
        except Exception:  # one failing task must not stop the agent
            self.stats.task_errors[task.name] = self.stats.task_errors.get(task.name, 0) + 1
            log.exception("agent task %s failed", task.name)

    def write_stats(self, path: Path) -> None:
        pending_batches, pending_bytes = self.spool.pending()
        stats = {
            "agent": asdict(self.stats),
            "push": asdict(self.pusher.stats) if self.pusher else None,
            "proxy_recorded": self.proxy.recorded if self.proxy else 0,
            "prefix_hashes": asdict(self.hasher.stats) if self.hasher else None,
            "spool": {
                "pending_batches": pending_batches,
                "pending_bytes": pending_bytes,
                "dropped_batches": self.spool.dropped_batches,
                "dropped_records": self.spool.dropped_records,
            },
        }
        path.write_text(json.dumps(stats, indent=2) + "\n")
