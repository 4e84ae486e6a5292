"""``autointerp lens``: compute and store the logit lens of a database's collect (view ``latent_logits``).

``autointerp collect`` does this itself; this command is for a database collected before it did, or
with ``--lens-k 0``, or to keep another number of tokens. It reloads the collect's model and dictionary
(``reopen.py``, checked against the stored SHA-256) and replaces that collect's lens.
"""

from __future__ import annotations

import argparse
import time

from ..store.logit_lens import DEFAULT_K
from .command_checks import require_at_least_one, require_writable_database

#: Latents per chunk (collect.logit_lens.DEFAULT_CHUNK; repeated here so that `autointerp --help` loads no torch).
DEFAULT_CHUNK = 256


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "lens",
        help="lens: store the logit lens (promoted and suppressed tokens) of every latent of a collect",
        description="Compute the top and bottom K tokens of every latent's decoder direction through the "
        "collect's model (final norm, unembedding) and store them in the view latent_logits, replacing "
        "any stored lens. `autointerp collect` does this itself (--lens-k); use this for a database "
        "collected without it.",
    )
    parser.add_argument("--db", required=True, help="DuckDB file written by `autointerp collect`")
    parser.add_argument("--k", type=int, default=DEFAULT_K, help=f"tokens per latent and sign (default: {DEFAULT_K})")
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=DEFAULT_CHUNK,
        help="latents per chunk through the unembedding: peak memory is chunk-size x vocabulary logits "
        f"(default: {DEFAULT_CHUNK})",
    )
    parser.add_argument("--device", default="auto", help="device: auto (cuda when available), cpu, cuda, ...")
    return parser


def run(args: argparse.Namespace) -> int:
    from ..store.db import connect
    from ..store.logit_lens import write_logit_lens
    from .logit_lens import PLANTED_NOTE, compute_logit_lens, describe_lens, with_notes
    from .reopen import read_collect_source

    require_at_least_one(k=args.k, chunk_size=args.chunk_size)
    require_writable_database(args.db, "the lens")
    con = connect(args.db)  # a lock held by another process fails here, before the model loads
    try:
        source = read_collect_source(con)
        subject, dictionary = source.load(args.device)
        start = time.perf_counter()
        lens = compute_logit_lens(subject, dictionary, args.k, args.chunk_size, source.hookpoint)
        lens = with_notes(lens, dict.fromkeys(planted_beyond(con, source.run_id, dictionary.d_sae), PLANTED_NOTE))
        write_logit_lens(con, source.run_id, lens.rows)
        summary = lens.summary(time.perf_counter() - start)
    finally:
        con.close()
    print(f"{args.db}: collect {source.run_id}: {describe_lens(summary, args.k)}")
    return 0


def planted_beyond(con, run_id: str, n_loaded: int) -> list[int]:
    """Planted latents of collect ``run_id`` past the reloaded dictionary's own (``--planted`` appended
    them; reopening loads the real dictionary only)."""
    rows = con.execute(
        "SELECT latent FROM planted_latents WHERE run_id = ? AND latent >= ? ORDER BY latent", [run_id, n_loaded]
    ).fetchall()
    return [r[0] for r in rows]
