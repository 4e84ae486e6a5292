"""The output side of a latent, as the output-centric explainers (vocabproj, tokenchange, ensemble) see it:
the tokens its decoder direction promotes and suppresses through the logit lens (stored by collect in
``logit_lens``), and the tokens made more and less likely when it is steered (``token_change``, computed
here once per latent and setting, then reused by every later run).

The subject model is loaded only when a token change must be computed (a rerun whose token changes are
all stored never loads it); torch work runs in a thread, one latent at a time, while LLM calls for other
latents go on.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass, field

from ..config import ExplainConfig, config_hash
from ..errors import AutointerpError
from ..store import runs
from ..store.token_change import COLUMNS, SIGNS, neutral_windows, stored_token_change, token_change_rows

PLANTED_REASON = (
    "planted latent: a rule over token ids (planted_latents), it has no decoder direction, so it has no "
    "output side to explain from"
)


@dataclass(frozen=True)
class OutputSide:
    """One latent's output side, strongest first in every list: ``promoted``/``suppressed`` by the logit
    lens of its decoder direction, ``raised``/``lowered`` by steering it (token change). A list the
    explainer does not use is empty."""

    promoted: tuple[str, ...] = ()
    suppressed: tuple[str, ...] = ()
    raised: tuple[str, ...] = ()
    lowered: tuple[str, ...] = ()


@dataclass
class Prepared:
    """What the database already holds of a latent's output side: its lens tokens (or why the lens does
    not apply) and its stored token change (None: to compute)."""

    lens: tuple[tuple[str, ...], tuple[str, ...]] | None = None
    reason: str | None = None
    change: dict[str, list[tuple[str, float]]] | None = None


@dataclass
class OutputSides:
    """The output sides of one explain run's latents (``uses_lens`` / ``uses_change``: which parts its
    explainer shows). Construct with ``OutputSides.open`` before the backend opens: it refuses a database
    that cannot give them."""

    con: object
    config: ExplainConfig
    uses_lens: bool
    uses_change: bool
    collect_run: str = ""
    change_hash: str = ""
    windows: list[list[int]] = field(default_factory=list)
    planted: set[int] = field(default_factory=set)
    computed: int = 0
    reused: int = 0
    seconds: float = 0.0
    source: object = None  # the collect's CollectSource (read here, on the caller's thread)
    _lock: asyncio.Lock | None = None  # one model: one torch job at a time
    _loaded: tuple | None = None  # (SubjectModel, dictionary, TokenChangeProbe), loaded on first use

    @classmethod
    def open(cls, con, config: ExplainConfig, uses_lens: bool, uses_change: bool) -> OutputSides:
        sides = cls(con, config, uses_lens, uses_change, collect_run=runs.current_collect(con))
        sides.planted = _planted(con, sides.collect_run)
        if uses_change:
            sides.windows = neutral_windows(con, sides.collect_run, config.change_windows, config.change_window_len)
            if not sides.windows:
                raise AutointerpError(
                    f"--explainer {config.explainer} steers each latent over the collect's stored random contexts, "
                    f"but collect {sides.collect_run} stored none of at least {config.change_window_len} tokens.",
                    "a collect with random contexts (--random-explain above 0) and --window >= --change-window-len.",
                    "lower --change-window-len, or collect again with random contexts.",
                )
            from ..collect.reopen import read_collect_source

            sides.source = read_collect_source(con)
            sides.change_hash = config_hash(
                {
                    "method": "decoder direction added at every position, x change_scale x |max activation|; "
                    "mean change of next-token log-probability",
                    "collect": [sides.collect_run, sides.source.identity, sides.source.dtype],
                    "windows": hashlib.sha256(json.dumps(sides.windows).encode()).hexdigest(),
                    "k": config.output_tokens,
                    **{k: getattr(config, k) for k in ExplainConfig.CHANGE_SHAPING},
                }
            )
        sides._lock = asyncio.Lock()
        return sides

    def identity(self) -> dict:
        """What shapes the output side shown, for the explanation's identity."""
        shaping = {k: getattr(self.config, k) for k in ExplainConfig.OUTPUT_SHAPING}
        if self.uses_change:
            shaping["token_change"] = self.change_hash
        return shaping

    def report(self) -> dict:
        """Token changes computed and reused in this run, and the seconds of torch work."""
        return {"computed": self.computed, "reused": self.reused, "seconds": round(self.seconds, 2)}

    def read(self, cur, latents: list[int]) -> dict[int, Prepared]:
        """What is stored of ``latents``' output sides (one query per part and chunk, on ``cur``)."""
        prepared = {latent: Prepared() for latent in latents}
        if self.uses_lens:
            for latent, (lens, reason) in _read_lens(cur, latents, self.config.output_tokens).items():
                prepared[latent].lens = lens
                if not self.uses_change:  # the lens is all it has; with a token change, its lists show "(none)"
                    prepared[latent].reason = reason
        if self.uses_change:
            for latent, change in stored_token_change(cur, latents, self.change_hash).items():
                prepared[latent].change = change
        for latent in latents:
            if latent in self.planted:
                prepared[latent].reason = PLANTED_REASON
        return prepared

    async def side(self, latent: int, prepared: Prepared, latent_max: float, run) -> OutputSide | str:
        """The latent's ``OutputSide``, or the reason it has none (then it cannot be explained so): a
        planted latent, or for a lens-only explainer one whose lens does not apply or is not stored.
        A token change not yet stored is computed now and handed to ``run.writer``."""
        if prepared.reason:
            return prepared.reason
        promoted, suppressed = prepared.lens or ((), ())
        raised, lowered = (), ()
        if self.uses_change:
            change = prepared.change
            if change is None:
                async with self._lock:
                    start = time.perf_counter()
                    ranked = await asyncio.to_thread(self._compute, latent, latent_max)
                    self.seconds += time.perf_counter() - start
                self.computed += 1
                rows = token_change_rows(run.run_id, latent, self.change_hash, ranked)
                run.writer.put_result(_writer(latent, self.change_hash, rows))
                change = {sign: [(token, value) for _, token, value in ranked[sign]] for sign in SIGNS}
            else:
                self.reused += 1
            k = self.config.output_tokens
            raised = tuple(t for t, _ in change["promoted"][:k])
            lowered = tuple(t for t, _ in change["suppressed"][:k])
        return OutputSide(promoted, suppressed, raised, lowered)

    def _model(self):
        """(SubjectModel, dictionary, TokenChangeProbe over the windows), loaded on first use."""
        if self._loaded is None:
            import torch

            from ..models.token_change import TokenChangeProbe

            subject, dictionary = self.source.load()  # no database access: safe in the worker thread
            probe = TokenChangeProbe(subject, torch.tensor(self.windows), bos_id=subject.tokenizer.bos_token_id)
            self._loaded = (subject, dictionary, probe)
        return self._loaded

    def _compute(self, latent: int, latent_max: float) -> dict[str, list[tuple[int, str, float]]]:
        """The latent's ranked token change (in a worker thread, under the lock)."""
        from ..models.steering import steering_target

        subject, dictionary, probe = self._model()
        hookpoint, direction = steering_target(dictionary, latent, subject)
        change = probe.change(
            hookpoint, direction, self.config.change_scale * abs(latent_max), self.config.output_tokens
        )
        ranked = {}
        for sign, pairs in (("promoted", change.promoted), ("suppressed", change.suppressed)):
            tokens = subject.tokenizer.batch_decode([[i] for i, _ in pairs])
            ranked[sign] = [(i, token, value) for (i, value), token in zip(pairs, tokens, strict=True)]
        return ranked


def _writer(latent: int, change_hash: str, rows: list[list]):
    def write(replacements, call_id_of):  # noqa: ARG001 - the writer's signature
        replacements.replace(
            "token_change", ["latent", "config_hash"], COLUMNS, [latent, change_hash], rows, now="created_at"
        )

    return write


def _planted(con, collect_run: str) -> set[int]:
    rows = con.execute("SELECT latent FROM planted_latents WHERE run_id = ?", [collect_run]).fetchall()
    return {r[0] for r in rows}


def _read_lens(cur, latents: list[int], k: int) -> dict[int, tuple[tuple | None, str | None]]:
    """latent -> ((promoted, suppressed), None), or (None, why the lens does not apply or is missing).

    The lens holds what collect stored (``--lens-k``, 20 per sign by default; the spec's VocabProj uses
    the top and bottom 50): ``k`` tokens per sign are shown, or fewer when fewer are stored."""
    from ..store.logit_lens import lens_note, lens_tokens_of

    promoted = lens_tokens_of(cur, latents, "promoted", k)
    suppressed = lens_tokens_of(cur, latents, "suppressed", k)
    found = {}
    for latent in latents:
        if latent in promoted:
            tokens = (tuple(t for _, t, _ in promoted[latent]), tuple(t for _, t, _ in suppressed.get(latent, [])))
            found[latent] = (tokens, None)
            continue
        note = lens_note(cur, latent)
        if note:
            found[latent] = (None, f"the logit lens does not apply to this latent: {note}")
        else:
            found[latent] = (None, "no logit lens stored for this latent: run `autointerp lens --db PATH` first")
    return found
