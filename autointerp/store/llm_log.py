"""The LLM call log and its single writer task.

Workers never touch the database: they hand call records and result rows to ``CallLogWriter``, whose
one task owns the connection and commits whatever has arrived in one transaction at a time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from collections import defaultdict
from datetime import datetime, timezone
from typing import TYPE_CHECKING, NamedTuple

from .. import jsonio
from ..redact import redact
from .bulk import Replacements, insert_rows
from .cached_prefix import PrefixMemory

if TYPE_CHECKING:  # annotations only: storage needs none of the LLM layer at run time
    from ..llm.base import GenerateOptions
    from ..llm.queue import CallRecord


class StoredResponse(NamedTuple):
    """A logged successful answer, as the resume cache gives it back: the fields of a Completion, its
    logprobs as the logged JSON (or None), and the id of the call that paid for it."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    logprobs_json: str | None
    call_id: int


def request_hash(backend: str, model: str, messages: list[dict], options: GenerateOptions) -> str:
    shaping = dataclasses.asdict(options)
    if shaping.get("seed") is None:  # the hash of a request without a seed is what it was before seeds
        shaping.pop("seed", None)
    blob = json.dumps([backend, model, messages, shaping], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def cached_responses(con, backend: str, model: str) -> dict[str, StoredResponse]:
    """Successful earlier calls to ``model`` on ``backend``, by request hash: the resume cache of every
    stage (a request hash covers the messages and options, so explain and score prompts never meet).
    Where one request was answered more than once, the earliest answer is kept."""
    rows = con.execute(
        # a window, not arg_min: arg_min skips NULLs and would take another call's logprobs
        "SELECT request_hash, call_id, response, prompt_tokens, completion_tokens, logprobs FROM llm_calls "
        "WHERE backend = ? AND model = ? AND error IS NULL "
        "QUALIFY row_number() OVER (PARTITION BY request_hash ORDER BY call_id) = 1",
        [backend, model],
    ).fetchall()
    return {h: StoredResponse(r, p or 0, c or 0, lp, cid) for h, cid, r, p, c, lp in rows}


class CallLogWriter:
    def __init__(self, con, run_id: str, purpose: str, backend: str, model: str):
        self.con = con
        self.run_id = run_id
        self.purpose = purpose
        self.backend = backend
        self.model = model
        self._queue: asyncio.Queue = asyncio.Queue()
        self._last_call: dict[str, int] = {}
        self._n_calls: dict[str, int] = defaultdict(int)
        self._prefixes = PrefixMemory()
        self.transactions = 0

    def log_call(self, record: CallRecord) -> None:
        self._queue.put_nowait(("call", record))

    def reuse_call(self, item: str, call_id: int) -> None:
        """``item``'s answer comes from the logged call ``call_id`` (the resume cache): it becomes the item's
        last call, which its rows then point to, and no call is logged again."""
        self._queue.put_nowait(("reuse", item, call_id))

    def put_explanation(self, item: str, row: dict) -> None:
        self._queue.put_nowait(("explanation", item, row))

    def put_result(self, write) -> None:
        """``write(rows, call_id_of)`` runs in the writer's transaction: ``rows.replace(...)`` (a
        ``store.bulk.Replacements``) puts rows in place of stored ones, written in bulk at the end of
        the transaction; ``call_id_of(item)`` gives the id of the item's last logged call."""
        self._queue.put_nowait(("result", write))

    async def close(self) -> None:
        self._queue.put_nowait(("close",))

    async def run(self) -> None:
        while True:
            items = [await self._queue.get()]
            while not self._queue.empty():
                items.append(self._queue.get_nowait())
            self._write(items)
            if any(item[0] == "close" for item in items):
                return

    def _write(self, items: list[tuple]) -> None:
        """One transaction for everything that has arrived, taken in order (an item's calls are
        numbered before its explanation or result reads their ids), then written in bulk: all calls in
        one statement, explanations and results as keyed replacements (``store/bulk.py``): per-row
        inserts were the single writer's ceiling at many-GPU rates."""
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            n_calls = sum(1 for item in items if item[0] == "call")
            # Ids from the table's sequence, in call order, so that a later call has a larger id.
            ids = iter(
                sorted(r[0] for r in con.execute("SELECT nextval('llm_call_ids') FROM range(?)", [n_calls]).fetchall())
                if n_calls
                else []
            )
            calls, results = [], Replacements(con)
            for item in items:
                if item[0] == "call":
                    calls.append(self._call_row(next(ids), item[1]))
                elif item[0] == "reuse":
                    self._last_call[item[1]] = item[2]
                elif item[0] == "explanation":
                    row = self._explanation_row(item[1], item[2])
                    results.replace(
                        "explanation_rows",
                        ["latent", "config_hash"],
                        self.EXPLANATION_COLUMNS,
                        row[:2],
                        [row],
                        now="created_at",
                    )
                elif item[0] == "result":
                    item[1](results, self._last_call.get)
            insert_rows(con, "llm_calls", self.CALL_COLUMNS, calls)
            results.flush()
            con.execute("COMMIT")
            self.transactions += 1
        except BaseException:
            con.execute("ROLLBACK")
            raise

    CALL_COLUMNS = [
        "call_id",
        "run_id",
        "purpose",
        "item",
        "backend",
        "model",
        "request_hash",
        "messages",
        "options",
        "response",
        "logprobs",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "cached_tokens_estimate",
        "latency_s",
        "attempt",
        "error",
        "created_at",
    ]

    def _call_row(self, call_id: int, record: CallRecord) -> list:
        """The llm_calls row of one attempt; it becomes its item's last call."""
        c = record.completion
        logprobs = None
        if c is not None and c.logprobs is not None:
            # the standard library: a logprob of -inf must come back as -inf, not null
            logprobs = json.dumps([dataclasses.asdict(t) for t in c.logprobs])
        self._last_call[record.item] = call_id
        self._n_calls[record.item] += 1
        return [
            call_id,
            self.run_id,
            record.purpose,
            record.item,
            self.backend,
            self.model,
            request_hash(self.backend, self.model, record.messages, record.options),
            jsonio.dumps(record.messages),
            jsonio.dumps(dataclasses.asdict(record.options)),
            None if c is None else c.text,
            logprobs,
            None if c is None else c.prompt_tokens,
            None if c is None else c.completion_tokens,
            None if c is None else c.cached_tokens,
            None if c is None else self._prefixes.estimate(record.item, record.messages, c.prompt_tokens),
            record.latency_s,
            record.attempt,
            redact(record.error),  # a server may echo credentials in its error
            datetime.fromtimestamp(record.started_at, tz=timezone.utc).replace(tzinfo=None),
        ]

    EXPLANATION_COLUMNS = [
        "latent",
        "config_hash",
        "run_id",
        "explainer",
        "model",
        "status",
        "explanation",
        "reason",
        "answer",
        "call_id",
        "n_calls",
        "prompt_tokens",
        "completion_tokens",
    ]

    def _explanation_row(self, item: str, row: dict) -> list:
        row = dict(row)
        if row.get("call_id") is None and row["status"] != "failed":
            row["call_id"] = self._last_call.get(item)
        if row.get("n_calls") is None:
            row["n_calls"] = self._n_calls.get(item, 0)
        row["run_id"] = self.run_id
        return [row[c] for c in self.EXPLANATION_COLUMNS]
