"""The logit lens of every latent of a collect, computed with the collect's model and stored.

For each latent whose decoder writes into the residual stream, the top and bottom ``k`` tokens of its
decoder direction through the final norm and the unembedding (``models/logit_lens.py``; the spec's
section A step 0 and section C VocabProj). Where the lens does not apply the latent gets one row with the
reason instead: the module the dictionary writes to (an SAE: its hookpoint; a transcoder: hookpoint_out;
MLP neurons: the down projection's output) does not reach the residual stream directly, a transcoder
does not say where it writes, or the latent is planted (no decoder direction).

The directions go through ``chunk_size`` at a time on the model's device: the latents x vocabulary
matrix is never built, only [n_latents, k] ids and values are kept.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from ..errors import AutointerpError
from ..models.dictionaries import NeuronDictionary, resolve_module_names
from ..models.dictionaries.planted import NO_DIRECTION, planted_part
from ..models.logit_lens import logit_lens, reaches_residual, unembedding_of
from ..store.logit_lens import DEFAULT_K, SIGNS, write_logit_lens

#: Latents per chunk through the unembedding: peak memory is DEFAULT_CHUNK x vocabulary logits.
DEFAULT_CHUNK = 256
PLANTED_NOTE = NO_DIRECTION.replace(" to steer", "") + ": the logit lens does not apply"


def lens_target(dictionary, subject_model, hookpoint: str = "") -> tuple[str, str | None]:
    """(module the dictionary's decoder writes to, None), or (that module or '', why the lens does not
    apply there). ``hookpoint``: where the collect read, when it overrode the dictionary's own (--hookpoint).
    """
    base = getattr(dictionary, "base", dictionary)  # PlantedAppended: the real dictionary's latents
    resolve_module_names(base, subject_model)
    if base.reads == "output" or isinstance(base, NeuronDictionary):
        target = (hookpoint if base.reads == "output" else "") or base.hookpoint
    else:
        target = base.hookpoint_out
        if not target:
            return "", (
                f"the {base.describe()} does not say which module it writes (no hookpoint_out in its files), "
                "so where its decoder directions enter the model is unknown"
            )
    why = reaches_residual(subject_model, target)
    return target, (f"the decoder writes to {target}, not the residual stream: {why}" if why else None)


@dataclass
class Lens:
    """A computed lens: ``rows`` (a table with the columns of ``store.logit_lens.COLUMNS``), how many
    latents were ranked and which got a note (latent -> reason)."""

    rows: pa.Table
    ranked: int
    notes: dict[int, str]

    def summary(self, seconds: float) -> dict:
        """Counts for the stage's output and the run summary: latents ranked, latents with a note (and
        the distinct notes), seconds."""
        return {
            "ranked": self.ranked,
            "noted": len(self.notes),
            "notes": sorted(set(self.notes.values())),
            "seconds": round(seconds, 2),
        }


def compute_logit_lens(
    subject_model, dictionary, k: int = DEFAULT_K, chunk_size: int = DEFAULT_CHUNK, hookpoint: str = ""
) -> Lens:
    """The lens of every latent of ``dictionary`` on ``subject_model`` (a ``SubjectModel``): 2 x ``k``
    ranking rows per latent where it applies, ordered by latent, sign (promoted first) and rank; one note
    row where it does not (after the ranking rows)."""
    n_latents = int(dictionary.d_sae)
    planted = planted_part(dictionary)
    n_base = planted[0] if planted else n_latents
    notes: dict[int, str] = {}
    directions = None
    if n_base:
        _, note = lens_target(dictionary, subject_model, hookpoint)
        if note is None:
            directions, note = _directions(dictionary, subject_model)
        if note is not None:
            notes.update(dict.fromkeys(range(n_base), note))
    notes.update(dict.fromkeys(range(n_base, n_latents), PLANTED_NOTE))
    tables = [] if directions is None else [_ranking_rows(subject_model, directions, k, chunk_size)]
    if notes or not tables:
        tables.append(_note_rows(notes))
    return Lens(pa.concat_tables(tables), 0 if directions is None else n_base, notes)


def with_notes(lens: Lens, notes: dict[int, str]) -> Lens:
    """``lens`` with a note row for each latent of ``notes`` it has no row for (latent -> reason)."""
    notes = {i: note for i, note in notes.items() if i not in lens.notes}
    if not notes:
        return lens
    return Lens(pa.concat_tables([lens.rows, _note_rows(notes)]), lens.ranked, {**lens.notes, **notes})


def describe_lens(summary: dict, k: int) -> str:
    """One line on a computed lens (``Lens.summary``), for the output of collect and lens."""
    line = (
        f"logit lens: {summary['ranked']} latents with their top {k} promoted and suppressed tokens "
        f"in {summary['seconds']:.0f} s (SELECT * FROM latent_logits)"
    )
    if summary["noted"]:
        line += f"; {summary['noted']} latents have a note instead: {'; '.join(summary['notes'][:2])}"
    return line + "."


def _directions(dictionary, subject_model) -> tuple[torch.Tensor | None, str | None]:
    """(decoder directions [n_base, d_model], None), or (None, why they cannot be read through the lens)."""
    try:
        directions = dictionary.decoder_directions()
    except AutointerpError as exc:
        return None, f"the dictionary has no decoder directions: {exc.what}"
    width = unembedding_of(subject_model).weight.shape[1]
    if directions.shape[-1] != width:
        return None, (
            f"the decoder directions have width {directions.shape[-1]}, the unembedding reads {width}: they do "
            "not live in the residual stream"
        )
    return directions, None


def _ranking_rows(subject_model, directions: torch.Tensor, k: int, chunk_size: int) -> pa.Table:
    unembedding = unembedding_of(subject_model)
    n = int(directions.shape[0])
    k = min(int(k), unembedding.vocabulary)
    ids = np.empty((n, 2, k), dtype=np.int32)  # [latent, sign (promoted, suppressed), rank]
    values = np.empty((n, 2, k), dtype=np.float64)
    for chunk in logit_lens(directions, unembedding, k, chunk_size):
        rows = slice(chunk.start, chunk.start + chunk.top_ids.shape[0])
        ids[rows, 0], values[rows, 0] = chunk.top_ids.numpy(), chunk.top_values.numpy()
        ids[rows, 1], values[rows, 1] = chunk.bottom_ids.numpy(), chunk.bottom_values.numpy()
    unique, inverse = np.unique(ids, return_inverse=True)
    strings = pa.array(subject_model.tokenizer.batch_decode([[int(i)] for i in unique]), type=pa.string())
    signs = pa.DictionaryArray.from_arrays(np.tile(np.repeat(np.array([0, 1], np.int8), k), n), list(SIGNS))
    return pa.table(
        {
            "latent": np.repeat(np.arange(n, dtype=np.int32), 2 * k),
            "sign": signs.cast(pa.string()),
            "rank": np.tile(np.arange(k, dtype=np.int32), 2 * n),
            "token_id": ids.reshape(-1),
            "token": strings.take(pa.array(inverse.reshape(-1))),
            "value": values.reshape(-1),
            "note": pa.nulls(n * 2 * k, pa.string()),
        }
    )


def _note_rows(notes: dict[int, str]) -> pa.Table:
    latents = sorted(notes)
    n = len(latents)
    return pa.table(
        {
            "latent": pa.array(latents, type=pa.int32()),
            "sign": pa.nulls(n, pa.string()),
            "rank": pa.nulls(n, pa.int32()),
            "token_id": pa.nulls(n, pa.int32()),
            "token": pa.nulls(n, pa.string()),
            "value": pa.nulls(n, pa.float64()),
            "note": pa.array([notes[i] for i in latents], type=pa.string()),
        }
    )


def lens_of_loaded(loaded, k: int, chunk_size: int = DEFAULT_CHUNK) -> Lens:
    """The lens of a collect's loaded model and dictionary (``setup.Loaded``), run through the executor's
    ``call`` where the collect set them up."""
    return compute_logit_lens(loaded.subject, loaded.dictionary, k, chunk_size, loaded.hookpoint)


def store_logit_lens(
    con,
    subject_model,
    dictionary,
    run_id: str,
    k: int = DEFAULT_K,
    chunk_size: int = DEFAULT_CHUNK,
    hookpoint: str = "",
) -> dict:
    """Compute the lens of every latent (``compute_logit_lens``) and replace collect ``run_id``'s stored
    rows with it in one transaction. Returns ``Lens.summary``."""
    start = time.perf_counter()
    lens = compute_logit_lens(subject_model, dictionary, k, chunk_size, hookpoint)
    write_logit_lens(con, run_id, lens.rows)
    return lens.summary(time.perf_counter() - start)
