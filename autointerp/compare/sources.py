"""The two databases of a comparison: opened read-only, checked to be comparable, described.

A comparison needs two collect databases on the same subject model (latent indices of two dictionaries
mean nothing across models). Everything that can be refused is refused here, before any model loads and
before anything is written: a missing file, the same file twice, a database without a complete collect,
different subject models, and (unless explanations are not asked for) a database without explanations.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..collect.reopen import CollectSource, read_collect_source
from ..errors import AutointerpError
from ..store.db import connect

#: Collect settings that decide which text a collect read: equal on both sides -> same corpus.
CORPUS_KEYS = ("dataset", "dataset_config", "split", "text_column", "seq_len")


@dataclass
class Side:
    """One database of the comparison: ``label`` 'a' or 'b', its path and latest complete collect."""

    label: str
    path: Path
    source: CollectSource
    corpus: dict
    n_latents: int
    n_explained: int


def _open(label: str, path: Path) -> Side:
    if not path.exists():
        raise AutointerpError(
            f"No database at {path} (--db {label}).",
            "two DuckDB files written by `autointerp collect`.",
            "check the path.",
        )
    con = connect(path, read_only=True)
    try:
        try:
            source = read_collect_source(con)
        except AutointerpError as exc:
            raise AutointerpError(
                f"{path} has no complete collect run, so its model and dictionary are unknown.",
                "a database written by `autointerp collect`.",
                "compare two collect databases (imported latents have no dictionary to match).",
            ) from exc
        config = json.loads(con.execute("SELECT config FROM runs WHERE run_id = ?", [source.run_id]).fetchone()[0])
        n_latents = con.execute("SELECT count(*) FROM latents").fetchone()[0]
        n_explained = con.execute(
            "SELECT count(DISTINCT latent) FROM explanation_rows WHERE status = 'explained' AND explanation IS NOT NULL"
        ).fetchone()[0]
    finally:
        con.close()
    corpus = {key: config.get(key) for key in CORPUS_KEYS}
    return Side(label, path, source, corpus, int(n_latents), int(n_explained))


def open_sides(path_a: str | Path, path_b: str | Path, explanations: bool = True) -> tuple[Side, Side]:
    """Both sides, checked: distinct existing collect databases of one subject model, each with at least
    one explanation when ``explanations``. Raises ``AutointerpError`` otherwise; opens read-only."""
    a_path, b_path = Path(path_a), Path(path_b)
    if a_path.exists() and b_path.exists() and a_path.resolve() == b_path.resolve():
        raise AutointerpError(
            f"--db {path_a} and --db {path_b} are the same file.",
            "two different databases (two dictionaries to compare).",
            "to compare a database with itself, copy it first (the matching is then the identity).",
        )
    a, b = _open("a", a_path), _open("b", b_path)
    if a.source.model != b.source.model or a.source.model_name != b.source.model_name:
        raise AutointerpError(
            f"The databases were collected on different subject models: {a.source.model_name} ({a.path}) and "
            f"{b.source.model_name} ({b.path}).",
            "two collects of the same subject model: latents of different models live in different spaces.",
            "collect both dictionaries with the same --model.",
        )
    if explanations:
        for side in (a, b):
            if side.n_explained == 0:
                raise AutointerpError(
                    f"{side.path} has no explanations, so explanation similarity cannot be measured.",
                    "explained databases (`autointerp explain --db ...`) on both sides.",
                    "explain it first, or pass --no-explanations to compare decoders and activations only.",
                )
    return a, b


def same_corpus(a: Side, b: Side) -> str | None:
    """None when both collects read the same corpus (the same text, packed the same way), else why not."""
    differ = [key for key in CORPUS_KEYS if a.corpus.get(key) != b.corpus.get(key)]
    if not differ:
        return None
    return (
        "the collects read different corpora ("
        + ", ".join(f"{key}: {a.corpus.get(key)!r} vs {b.corpus.get(key)!r}" for key in differ)
        + ")"
    )


def describe(side: Side, n_latents: int, d_model: int) -> dict:
    """The ``compare_sources`` row of a side (``n_latents``: the dictionary's width, ``d_model``: its
    decoder directions' width)."""
    return {
        "side": side.label,
        "path": str(side.path.resolve()),
        "collect_run": side.source.run_id,
        "model": side.source.model_name,
        "hookpoint": side.source.hookpoint,
        "n_latents": n_latents,
        "d_model": d_model,
    }
