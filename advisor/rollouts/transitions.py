"""The rollout state machine: which status may follow which, and the batches of targets.

pending -> canary -> progressing -> done, with rolling_back -> rolled_back | failed from any
started state, failed on an internal error, and aborted from pending or a started state.
"""

from __future__ import annotations

ALLOWED: dict[str, frozenset[str]] = {
    "pending": frozenset({"canary", "aborted"}),
    "canary": frozenset({"progressing", "done", "rolling_back", "failed", "aborted"}),
    "progressing": frozenset({"done", "rolling_back", "failed", "aborted"}),
    "rolling_back": frozenset({"rolled_back", "failed"}),
    "done": frozenset(),
    "rolled_back": frozenset(),
    "failed": frozenset(),
    "aborted": frozenset(),
}


class TransitionError(ValueError):
    """A status change the state machine does not allow."""


def check_transition(current: str, new: str) -> None:
    if new not in ALLOWED.get(current, frozenset()):
        allowed = ", ".join(sorted(ALLOWED.get(current, frozenset()))) or "nothing (it is over)"
        raise TransitionError(f"a {current} rollout cannot become {new} (it may become {allowed})")


def batches(count: int, max_unavailable: int) -> list[int]:
    """Batch number of each target in order: the first is the canary (0), then groups of at
    most `max_unavailable` (1, 2, ...), so no more nodes are restarting at once."""
    if count < 0 or max_unavailable < 1:
        raise ValueError("count must be >= 0 and max_unavailable >= 1")
    return [0 if i == 0 else 1 + (i - 1) // max_unavailable for i in range(count)]
