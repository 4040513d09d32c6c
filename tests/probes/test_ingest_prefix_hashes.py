"""Prompt block hashes in agent batches: validated per row, stored on the request records."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.test import Client

from probes.agent.batch import rows_to_columns
from probes.ingest.schema import PayloadError, parse_batch
from probes.models import RequestRecord
from tests.probes.helpers import batch, post, registered_node, request

NOW = time.time() - 300
# request(): 100 prompt tokens; in 16-token blocks at most 100 // 16 + 1 = 7 hashes.
HASHES = [2**63 - 1, -(2**63), 0, 12345, -1, 7]


def _errors(payload: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(PayloadError) as caught:
        parse_batch(payload)
    return caught.value.errors


@pytest.mark.parametrize("columns", [False, True])
def test_it_takes_hashes_and_their_block_size_in_either_layout(columns: bool) -> None:
    rows = [request(NOW, prefix_block_hashes=HASHES, prefix_block_tokens=16), request(NOW + 1)]
    parsed = parse_batch(batch(requests=rows_to_columns(rows) if columns else rows))
    assert [row[-2:] for row in parsed.requests] == [(HASHES, 16), (None, None)]


@pytest.mark.parametrize(
    ("extra", "field", "message"),
    [
        ({"prefix_block_hashes": [1] * 8, "prefix_block_tokens": 16}, "prefix_block_hashes",
         "at most prompt_tokens // prefix_block_tokens + 1 = 7 hashes, got 8"),
        ({"prefix_block_hashes": [1, 2**63], "prefix_block_tokens": 16}, "prefix_block_hashes",
         "item 1 must be an integer from -2**63 to 2**63-1, got 9223372036854775808"),
        ({"prefix_block_hashes": [1, True], "prefix_block_tokens": 16}, "prefix_block_hashes",
         "item 1 must be an integer from -2**63 to 2**63-1, got True"),
        ({"prefix_block_hashes": "1,2", "prefix_block_tokens": 16}, "prefix_block_hashes",
         "must be a list of at most 65536 integers"),
        ({"prefix_block_hashes": [1]}, "prefix_block_tokens", "required with prefix_block_hashes"),
        ({"prefix_block_tokens": 16}, "prefix_block_hashes", "required with prefix_block_tokens"),
        ({"prefix_block_hashes": [1], "prefix_block_tokens": 0}, "prefix_block_tokens",
         "must be between 1 and 1048576, got 0"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("columns", [False, True])
def test_it_names_the_field_and_the_row_of_bad_hashes(
    extra: dict[str, Any], field: str, message: str, columns: bool
) -> None:
    rows = [request(NOW), request(NOW + 1, **extra)]
    errors = _errors(batch(requests=rows_to_columns(rows) if columns else rows))
    path = f"requests.{field}[1]" if columns else f"requests[1].{field}"
    assert errors == [(path, message)]


@pytest.mark.django_db
@pytest.mark.parametrize("columns", [False, True])
def test_it_stores_the_hashes_on_the_request_records(client: Client, columns: bool) -> None:
    node, token = registered_node()
    rows = [request(NOW, prefix_block_hashes=HASHES, prefix_block_tokens=16), request(NOW + 1)]
    payload = batch(requests=rows_to_columns(rows) if columns else rows)
    payload["agent"] = {"version": "test", "dropped_prefix_hashes": 4}
    response = post(client, token, payload)
    assert response.status_code == 201, response.content
    stored = RequestRecord.objects.order_by("arrival_ts")
    assert [(r.prefix_block_hashes, r.prefix_block_tokens, r.source) for r in stored] == [
        (HASHES, 16, "proxy"),
        (None, None, "proxy"),
    ]
    node.refresh_from_db()
    assert node.agent_dropped_prefix_hashes == 4


@pytest.mark.django_db
def test_a_batch_with_a_bad_hash_list_stores_nothing(client: Client) -> None:
    _node, token = registered_node()
    rows = [request(NOW), request(NOW + 1, prefix_block_hashes=[1] * 8, prefix_block_tokens=16)]
    response = post(client, token, batch(requests=rows))
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "requests[1].prefix_block_hashes",
         "message": "at most prompt_tokens // prefix_block_tokens + 1 = 7 hashes, got 8"}
    ]  # fmt: skip
    assert RequestRecord.objects.count() == 0
