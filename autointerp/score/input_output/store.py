"""The output side of each latent (``sides.OutputSides``) for one score run, computed once and shared by
the ``input_score`` and ``output_score`` scorers.

The subject model and dictionary are those of the database's collect, loaded on first use. Latents are
computed in blocks of ``BLOCK`` chosen latents (the stage scores in latent order), each block with its
random directions in one batched forward pass, in a thread, one block at a time. Planted latents have no
decoder row: refused without loading anything.
"""

from __future__ import annotations

import asyncio
import time

from ...collect.reopen import read_collect_source
from ...config import config_hash
from ..intervention.store import PLANTED_REASON, planted_latents
from .sides import PROMPT, REPRESENTATIVE_TOKENS, OutputSide, OutputSides

#: Latents per batched forward (each with its random direction: twice as many sequences).
BLOCK = 64
PLANTED = PLANTED_REASON.replace("the intervention scorers do not apply", "input_score and output_score do not apply")


class OutputSideStore:
    """``side(latent)``: the latent's ``OutputSide`` for the scorers of ``context`` (a ``ScoreContext``),
    computed once per run (module docstring). ``hash`` names everything that shapes it; ``lens_hash``
    what shapes the representative tokens alone (all the input score depends on here)."""

    def __init__(self, context):
        config = context.config
        self.con, self.config = context.con, config
        self.source = read_collect_source(self.con)
        self.planted = planted_latents(self.con, self.source.run_id)
        self.order = sorted(context.chosen)
        lens = {
            "collect": self.source.identity,
            "dtype": self.source.dtype,
            "representative_tokens": REPRESENTATIVE_TOKENS,
            "seed": config.seed,
        }
        self.lens_hash = config_hash(lens)  # what shapes the representative tokens (the input score's side)
        self.hash = config_hash(
            {
                **lens,
                "prompt": PROMPT,
                "alpha": config.output_alpha,
                "edit": "alpha * m * decoder row at the last position; m = max latent activation there",
            }
        )
        self._lock = asyncio.Lock()
        self._sides: dict[int, OutputSide] = {}
        self._computer: OutputSides | None = None
        self.seconds = 0.0

    def report(self) -> dict:
        """Latents computed, batched forward passes run and seconds of torch work, for benchmarks."""
        passes = self._computer.forward_passes if self._computer else 0
        return {"latents": len(self._sides), "forward_passes": passes, "seconds": self.seconds}

    async def side(self, latent: int) -> OutputSide:
        """The latent's ``OutputSide`` (its block computed now if it is not yet)."""
        if latent in self.planted:
            return OutputSide(latent, PLANTED)
        async with self._lock:
            if latent not in self._sides:
                start = time.perf_counter()
                self._sides.update(await asyncio.to_thread(self._compute, self._block(latent)))
                self.seconds += time.perf_counter() - start
        return self._sides[latent]

    def _block(self, latent: int) -> list[int]:
        """``latent`` and the next chosen latents not yet computed."""
        later = [x for x in self.order if x > latent and x not in self._sides and x not in self.planted]
        return [latent] + later[: BLOCK - 1]

    def _compute(self, block: list[int]) -> dict[int, OutputSide]:
        if self._computer is None:
            subject, dictionary = self.source.load()
            self._computer = OutputSides(subject, dictionary, self.config.output_alpha, self.config.seed)
        return self._computer.compute(block)
