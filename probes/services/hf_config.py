"""An operator's config.json for a deployment whose agent cannot see the model's files.

Stored like an agent's (`ModelDeployment.hf_config`), with "uploaded by <user>" as its source.
The latest report wins: an agent that later reads a different config.json replaces the
upload (the agent reads what vLLM actually serves); the page shows which one is in use.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.utils import timezone

from probes.hf_config import ConfigReading, config_reading
from probes.ingest.schema import MAX_HF_CONFIG_BYTES, hf_config_problem
from probes.models import ModelDeployment


class HfConfigError(ValueError):
    """An upload refused; `field` names the value (`config.json.text_config.x`)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


def hf_config_parse(raw: bytes) -> dict[str, Any]:
    """The JSON object a config.json upload holds; HfConfigError naming what is wrong."""
    if len(raw) > MAX_HF_CONFIG_BYTES:
        raise HfConfigError(
            "config.json", f"{len(raw)} bytes; at most {MAX_HF_CONFIG_BYTES // 1024} KiB"
        )
    try:
        value = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise HfConfigError(
            "config.json", f"not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    except json.JSONDecodeError as exc:
        raise HfConfigError(
            "config.json", f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise HfConfigError("config.json", "nested too deep to read") from None
    problem = hf_config_problem(value, "config.json")
    if problem is not None:
        raise HfConfigError(*problem)
    assert isinstance(value, dict)  # hf_config_problem refuses anything else
    return value


def deployment_hf_config_upload(
    *, deployment: ModelDeployment, raw: bytes, username: str, now: datetime | None = None
) -> ConfigReading:
    """Check and store an uploaded config.json; what the engine read from it.

    Refused (HfConfigError, nothing stored) when it is not a JSON object the ingest API would
    take, or when the engine cannot read it: an operator is there to fix the file, and a
    stored config the engine cannot read would replace one it could.
    """
    config = hf_config_parse(raw)
    reading = config_reading(config, name=deployment.model_id)
    if reading.model is None:
        why = (reading.error or "").removeprefix(f"config.json of {deployment.model_id}: ")
        raise HfConfigError("config.json", f"the engine cannot read it: {why}")
    ModelDeployment.objects.filter(pk=deployment.pk).update(
        hf_config=config,
        hf_config_source=f"uploaded by {username}"[:255],
        hf_config_at=now or timezone.now(),
    )
    return reading
