"""Prompt block hashes for the recording proxy: what prefix caching could reuse, no text.

vLLM's prefix cache keys each FULL block of `block_tokens` prompt tokens by a hash chained
over the blocks before it, so two prompts share cached blocks exactly as far as their
hash chains agree. The proxy records that chain per request: block j's hash is

    H(parent, tokens of block j) = blake2b(int64 LE parent || uint32 LE token ids, 8 bytes)

read as a signed little-endian int64, with parent 0 for the first block (or the hash of
the request's `cache_salt`, which vLLM uses to keep caches apart). The hash is stable
across processes and nodes (Python's `hash()` is not), so equal prefixes give equal chains
whichever node served them. A partial last block is not hashed (vLLM does not cache it).

The token ids come from vLLM's `POST /tokenize` (the chat template applied for chat
requests), called by `PrefixHasher`'s worker thread after the response was relayed: the
proxied request is never delayed and never fails because of it. The worker adds the hashes
to the request row and then records it; a row whose hashing cannot be done (queue full,
prompt over the size limit, /tokenize failed or counted other tokens than vLLM's usage)
is recorded without them, and counted. Neither the prompt text nor its token ids leave
the worker: only the hashes do.

Privacy: a hash chain says nothing of the text, but whoever guesses a prompt can check the
guess against it (as with any unsalted digest). `proxy.prefix_hashes: false` turns it off.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import re
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger(__name__)
# vLLM's default block size on GPUs; the CPU backend's is 128. Used when the agent config
# sets none and the engine's `vllm:cache_config_info` does not say.
DEFAULT_BLOCK_TOKENS = 16
ROOT_PARENT = 0
MAX_TOKEN_ID = 2**32 - 1
# The server's limit per request (`probes.ingest.schema.MAX_PREFIX_BLOCKS`): a longer chain
# would have the whole batch refused.
MAX_HASHES_PER_REQUEST = 65_536
# How long a failed look-up of the engine's block size is trusted before asking again.
BLOCK_SIZE_RETRY_S = 300.0
# Request keys /tokenize takes besides the prompt (vLLM's TokenizeCompletionRequest and
# TokenizeChatRequest), passed on as the client sent them so the tokens match the engine's.
_COMPLETION_KEYS = ("add_special_tokens",)
_CHAT_KEYS = (
    "add_generation_prompt", "continue_final_message", "add_special_tokens", "chat_template",
    "chat_template_kwargs", "tools", "mm_processor_kwargs",
)  # fmt: skip
_BLOCK_SIZE_RE = re.compile(rb'^vllm:cache_config_info\{(?:[^}]*,)?block_size="(\d+)"', re.M)

Row = dict[str, Any]


def block_hash(parent: int, token_ids: Sequence[int]) -> int:
    """The hash of one block given its parent's hash (a signed int64)."""
    data = struct.pack(f"<q{len(token_ids)}I", parent, *token_ids)
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)


def salt_root(cache_salt: str | None) -> int:
    """The first block's parent: 0, or a hash of the request's `cache_salt`."""
    if not cache_salt:
        return ROOT_PARENT
    digest = hashlib.blake2b(cache_salt.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def block_hashes(token_ids: Sequence[int], block_tokens: int, root: int = ROOT_PARENT) -> list[int]:
    """The chained hashes of every full block of `token_ids`."""
    if block_tokens < 1:
        raise ValueError(f"block_tokens: must be at least 1, got {block_tokens}")
    hashes: list[int] = []
    parent = root
    for start in range(0, len(token_ids) - block_tokens + 1, block_tokens):
        parent = block_hash(parent, token_ids[start : start + block_tokens])
        hashes.append(parent)
    return hashes


@dataclass(frozen=True)
class Prompt:
    """What is needed to get a request's prompt tokens: a /tokenize body or the ids."""

    tokenize_body: Mapping[str, Any] | None
    token_ids: tuple[int, ...] | None
    root: int = ROOT_PARENT


@dataclass
class HashStats:
    """Counters since the agent started; every recorded row is in at most one of them."""

    hashed: int = 0
    dropped: int = 0  # the queue was full: recorded without hashes
    too_large: int = 0  # the request was over max_prompt_bytes, or its chain too long
    failed: int = 0  # /tokenize failed or disagreed with vLLM's prompt token count
    unsupported: int = 0  # e.g. a batch of several prompts in one completions request


class PrefixHasher:
    """A bounded queue and one worker thread between the proxy and the recorder.

    `submit(row, prompt)` never blocks: with the queue full the row is recorded at once
    without hashes (counted in `stats.dropped`). `block_tokens` None: the engine's block
    size from its /metrics (`vllm:cache_config_info`), else DEFAULT_BLOCK_TOKENS.
    """

    def __init__(
        self,
        upstream: str,
        deliver: Callable[[Row], None],
        *,
        block_tokens: int | None = None,
        queue_size: int = 64,
        max_prompt_bytes: int = 512 * 1024,
        timeout_s: float = 10.0,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.deliver = deliver
        self.configured_block_tokens = block_tokens
        self.max_prompt_bytes = max_prompt_bytes
        self.timeout_s = timeout_s
        self.stats = HashStats()
        self._queue: queue.Queue[tuple[Row, Prompt]] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._engine_block_tokens: int | None = None
        self._block_size_asked_at: float | None = None
        self._lock = threading.Lock()  # stats are bumped from the proxy and worker threads

    # -- the proxy's side ------------------------------------------------------------------

    def prompt_of(self, request: Mapping[str, Any], path: str, body_bytes: int) -> Prompt | None:
        """What to tokenize for this request (None: it will not be hashed, counted)."""
        if body_bytes > self.max_prompt_bytes:
            return self._skipped("too_large")
        salt = request.get("cache_salt")
        root = salt_root(salt if isinstance(salt, str) else None)
        if path.endswith("/chat/completions"):
            messages = request.get("messages")
            if not isinstance(messages, list) or not messages:
                return self._skipped("unsupported")
            body = {"messages": messages, **_picked(request, _CHAT_KEYS)}
            return Prompt(tokenize_body=body, token_ids=None, root=root)
        prompt = request.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]  # a batch of one
        if isinstance(prompt, list) and prompt and all(type(t) is int for t in prompt):
            if not all(0 <= t <= MAX_TOKEN_ID for t in prompt):
                return self._skipped("unsupported")
            return Prompt(tokenize_body=None, token_ids=tuple(prompt), root=root)
        if not isinstance(prompt, str) or not prompt:
            return self._skipped("unsupported")
        body = {"prompt": prompt, **_picked(request, _COMPLETION_KEYS)}
        return Prompt(tokenize_body=body, token_ids=None, root=root)

    def submit(self, row: Row, prompt: Prompt) -> None:
        """Hash and record `row` on the worker thread; record it now if the queue is full."""
        try:
            self._queue.put_nowait((row, prompt))
        except queue.Full:
            self._count("dropped")
            self._deliver(row)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gca-prefix-hasher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Record what is still queued (without hashes: vLLM may be going away too)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s + 1.0)
        self._flush()

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout_s) as client:
            while not self._stop.is_set():
                try:
                    row, prompt = self._queue.get(timeout=0.2)
                except queue.Empty:
                    continue
                self._deliver(self.hashed(row, prompt, client))
        self._flush()

    def _flush(self) -> None:
        while True:
            try:
                row, _prompt = self._queue.get_nowait()
            except queue.Empty:
                return
            self._count("dropped")
            self._deliver(row)

    # -- the worker's side -----------------------------------------------------------------

    def hashed(self, row: Row, prompt: Prompt, client: httpx.Client) -> Row:
        """`row` with `prefix_block_hashes` and `prefix_block_tokens`, or as it was."""
        try:
            token_ids: Sequence[int] | None = prompt.token_ids
            if token_ids is None:
                token_ids = self._tokenize(client, row["served_name"], prompt)
            block_tokens = self._block_tokens(client)
        except (httpx.HTTPError, ValueError) as exc:
            self._count("failed")
            log.debug("no prefix hashes for a request: %s", exc)
            return row
        if len(token_ids) != row.get("prompt_tokens"):
            # Not the prompt vLLM saw (another chat template, a truncated prompt).
            self._count("failed")
            return row
        if len(token_ids) // block_tokens > MAX_HASHES_PER_REQUEST:
            self._count("too_large")
            return row
        self._count("hashed")
        hashes = block_hashes(token_ids, block_tokens, prompt.root)
        return {**row, "prefix_block_hashes": hashes, "prefix_block_tokens": block_tokens}

    def _tokenize(self, client: httpx.Client, model: str, prompt: Prompt) -> Sequence[int]:
        assert prompt.tokenize_body is not None
        response = client.post(
            self.upstream + "/tokenize", json={"model": model, **prompt.tokenize_body}
        )
        response.raise_for_status()
        tokens = response.json().get("tokens")
        if not isinstance(tokens, list) or not all(
            type(t) is int and 0 <= t <= MAX_TOKEN_ID for t in tokens
        ):
            raise ValueError("/tokenize: `tokens` must be a list of token ids")
        return tokens

    def _block_tokens(self, client: httpx.Client) -> int:
        if self.configured_block_tokens is not None:
            return self.configured_block_tokens
        if self._engine_block_tokens is not None:
            return self._engine_block_tokens
        now = time.monotonic()
        if self._block_size_asked_at is None or now - self._block_size_asked_at > (
            BLOCK_SIZE_RETRY_S
        ):
            self._block_size_asked_at = now
            try:
                response = client.get(self.upstream + "/metrics")
                match = _BLOCK_SIZE_RE.search(response.content)
            except httpx.HTTPError:
                match = None
            if match is not None and int(match.group(1)) > 0:
                self._engine_block_tokens = int(match.group(1))
                return self._engine_block_tokens
            log.warning("the engine does not report its KV block size; hashing %d-token "
                        "blocks", DEFAULT_BLOCK_TOKENS)  # fmt: skip
        return DEFAULT_BLOCK_TOKENS

    # -- helpers ---------------------------------------------------------------------------

    def _deliver(self, row: Row) -> None:
        try:
            self.deliver(row)
        except Exception:  # a recording failure must never stop the worker
            log.exception("could not record a proxied request")

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self.stats, name, getattr(self.stats, name) + 1)

    def _skipped(self, name: str) -> Prompt | None:
        self._count(name)
        return None


def _picked(request: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    return {key: request[key] for key in keys if request.get(key) is not None}
