"""``autointerp similar``: store each latent's nearest latents by decoder cosine and embed the
explanations, so that the view ``similar_latents`` answers for a database.

``autointerp collect`` stores the neighbours itself (``--neighbours-k``); this command is for a database
collected before it did, or with ``--neighbours-k 0``, or to keep another number of neighbours. It
reloads the collect's dictionary (``reopen.py``, checked against the stored SHA-256), replaces that
collect's neighbours, and embeds every explanation that has no current embedding.
"""

from __future__ import annotations

import argparse
import time

from ..store.decoder_neighbours import DEFAULT_K
from .command_checks import require_at_least_one, require_writable_database

#: Latents per chunk (collect.decoder_neighbours.DEFAULT_CHUNK; repeated so that `--help` loads no torch).
DEFAULT_CHUNK = 4096


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "similar",
        help="similar: store each latent's nearest latents by decoder cosine (view similar_latents)",
        description="Find the K nearest latents of every latent by decoder cosine (|cosine| for a signed "
        "dictionary) and store them in decoder_neighbours, replacing any stored; embed the explanations "
        "that have no current embedding. The view similar_latents then names near duplicates and split "
        "candidates. `autointerp collect` stores the neighbours itself (--neighbours-k).",
    )
    parser.add_argument("--db", required=True, help="DuckDB file written by `autointerp collect`")
    parser.add_argument("--k", type=int, default=DEFAULT_K, help=f"neighbours per latent (default: {DEFAULT_K})")
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=DEFAULT_CHUNK,
        help=f"latents per chunk: peak memory is chunk-size x latents cosines (default: {DEFAULT_CHUNK})",
    )
    parser.add_argument(
        "--embed",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="embed the explanations that have no current embedding (default: on)",
    )
    parser.add_argument("--device", default="auto", help="device: auto (cuda when available), cpu, cuda, ...")
    return parser


def run(args: argparse.Namespace) -> int:
    from ..similarity.embeddings import embed_explanations
    from ..store.db import connect
    from ..store.decoder_neighbours import write_decoder_neighbours
    from .decoder_neighbours import compute_decoder_neighbours, describe_neighbours
    from .reopen import read_collect_source

    require_at_least_one(k=args.k, chunk_size=args.chunk_size)
    require_writable_database(args.db, "the neighbours")
    con = connect(args.db)  # migrates an older database; a lock held elsewhere fails here, before loading
    try:
        source = read_collect_source(con)
        _, dictionary = source.load(args.device)
        start = time.perf_counter()
        found = compute_decoder_neighbours(dictionary, args.k, args.chunk_size)
        write_decoder_neighbours(con, source.run_id, found.rows)
        summary = found.summary(time.perf_counter() - start)
        report = embed_explanations(con) if args.embed else None
    finally:
        con.close()
    print(f"{args.db}: collect {source.run_id}: {describe_neighbours(summary, args.k)}")
    if report is not None:
        print(
            f"{args.db}: explanation embeddings: {report.embedded} embedded, {report.reused} already current "
            f"({report.seconds:.1f} s)."
        )
    return 0
