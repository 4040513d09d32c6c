"""The vLLM engine args diff: a configuration today beside a change, one line per CLI flag.

Shared by the assessment page (a deployment's stored args vs the plan's `config_change`) and
the rollout page (a target node's config vs the rollout's change); both render it with
`templates/dashboard/_args_diff.html`. Flags are spelled as on the command line
(`max_num_seqs` and `--max-num-seqs` are one flag); true/false show as (on)/(off).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ArgLine:
    """One line of the vLLM args diff: kind is "same", "changed", "added" or "removed"."""

    flag: str
    before: str | None
    after: str | None
    kind: str


def _flag(name: str) -> str:
    return "--" + str(name).lstrip("-").replace("_", "-")


def _arg_text(value: Any) -> str:
    if value is True:
        return "(on)"
    if value is False:
        return "(off)"
    return str(value)


def args_text(args: dict[str, Any]) -> str:
    """Engine args as the diff spells them, one line: "--max-num-seqs 64 --enforce-eager (on)"."""
    return " ".join(f"{_flag(k)} {_arg_text(v)}" for k, v in sorted((args or {}).items()))


def args_diff(
    before: dict[str, Any], change: dict[str, Any], *, replaces: bool = False
) -> tuple[ArgLine, ...]:
    """Today's engine args (any spelling) beside a change's `engine_args` (and tensor_parallel).

    A flag only today's config has is kept ("same") when the change is a delta on it (an
    assessment's plan), and "removed" when the change `replaces` the engine args wholesale (a
    rollout: the node controller runs its base args plus exactly the change's args).
    """
    old = {_flag(k): v for k, v in (before or {}).items()}
    new_args = {_flag(k): v for k, v in (change.get("engine_args") or {}).items()}
    if change.get("tensor_parallel") is not None:
        new_args["--tensor-parallel-size"] = change["tensor_parallel"]
    lines = []
    for flag in sorted(set(old) | set(new_args)):
        if flag not in new_args:
            if replaces:
                lines.append(ArgLine(flag, _arg_text(old[flag]), None, "removed"))
            else:
                lines.append(ArgLine(flag, _arg_text(old[flag]), _arg_text(old[flag]), "same"))
        elif flag not in old:
            lines.append(ArgLine(flag, None, _arg_text(new_args[flag]), "added"))
        elif _arg_text(old[flag]) == _arg_text(new_args[flag]):
            lines.append(ArgLine(flag, _arg_text(old[flag]), _arg_text(old[flag]), "same"))
        else:
            lines.append(ArgLine(flag, _arg_text(old[flag]), _arg_text(new_args[flag]), "changed"))
    return tuple(lines)
