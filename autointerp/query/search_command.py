"""``autointerp search --db PATH "text"``: the latents whose explanation is closest in meaning to a text.

The file is read read-only first; only when some latest explanations lack an embedding is it opened for
writing, just long enough to embed those (``--no-embed`` skips that and searches what is stored, saying
how many cannot be found). ``--embed`` without a text only embeds. See ``similarity/search.py`` for the
ranking and the keyword boost.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import AutointerpError
from . import render
from .api import Database

COLUMNS = ["latent", "similarity", "score", "fuzzing", "frequency", "keyword", "explanation"]
TYPES = ["INTEGER", "DOUBLE", "DOUBLE", "DOUBLE", "DOUBLE", "BOOLEAN", "VARCHAR"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "search",
        help="query: find latents by the meaning of their explanation",
        description="Rank the latents by the cosine between a text's sentence embedding (the offline "
        "all-MiniLM-L6-v2) and the embedding of each latent's latest explanation, and print the top k with "
        "their detection and fuzzing scores and frequency. Explanations without an embedding are embedded "
        "first (once; only new or changed ones), which opens the file for writing briefly.",
        epilog='example: autointerp search --db demo.duckdb "numbers in dates" -k 10 --keyword year',
    )
    parser.add_argument("text", nargs="?", default=None, help="what the latent is about, in words")
    parser.add_argument("--db", required=True, help="DuckDB file written by autointerp")
    parser.add_argument("-k", type=int, default=20, help="how many latents to show (default: 20)")
    parser.add_argument(
        "--keyword",
        default=None,
        metavar="WORD",
        help="rank the explanations that contain WORD (case-insensitive) first, then the others",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON array of hits instead of a table")
    embed = parser.add_mutually_exclusive_group()
    embed.add_argument(
        "--embed", action="store_true", help="embed the explanations that lack an embedding; the text is optional"
    )
    embed.add_argument(
        "--no-embed",
        action="store_true",
        help="never write: search the stored embeddings only (explanations without one are not found)",
    )
    parser.add_argument("--max-width", type=int, default=80, metavar="N", help="cut explanations to N characters")
    return parser


def run(args: argparse.Namespace) -> int:
    from ..similarity.search import check_k, check_query, count_explained, count_missing, no_explanations_error

    if args.text is None and not args.embed:
        raise AutointerpError(
            "No search text given.",
            "a text saying what the latent is about, or --embed to only embed the explanations.",
            'e.g. autointerp search --db PATH "numbers in dates"',
        )
    text = check_query(args.text) if args.text is not None else None
    check_k(args.k)
    if args.max_width < 0:
        raise AutointerpError(f"--max-width {args.max_width} is negative.", "0 (no limit) or a positive number.")

    from ..models.sentence_encoder import SentenceEncoder

    with Database(args.db, read_only=True) as db:  # bad paths and empty databases fail before the model loads
        if count_explained(db.con) == 0:
            raise no_explanations_error(str(db.path))
        encoder = SentenceEncoder()
        missing = 0 if args.no_embed else count_missing(db.con, encoder.digest())
    if missing:
        embed(args.db, encoder)
    elif args.embed:
        print(f"{args.db}: every latest explanation has an embedding already.", file=sys.stderr)
    if text is None:
        return 0
    with Database(args.db, read_only=True) as db:
        hits = search_with(db, text, args.k, args.keyword, encoder)
    if args.json:
        print(json.dumps([h.as_dict() for h in hits], indent=1))
    else:
        rows = [
            (h.latent, h.similarity, h.score, h.fuzzing_score, h.frequency, h.keyword_match, h.explanation)
            for h in hits
        ]
        render.write_table(sys.stdout, COLUMNS, TYPES, iter(rows), args.max_width, 0)
    return 0


def embed(path: str, encoder) -> None:
    from ..similarity.embeddings import embed_explanations

    with Database(path, read_only=False) as db:
        report = embed_explanations(db.con, encoder, latest_only=True)
    print(
        f"{path}: embedded {report.embedded:,} explanation(s) in {report.seconds:.1f} s "
        f"({report.reused:,} already had an embedding).",
        file=sys.stderr,
    )


def search_with(db: Database, text: str, k: int, keyword: str | None, encoder):
    """Search ``db`` (read-only) with an already loaded encoder, printing the missing-embedding note."""
    from ..similarity.search import SearchIndex, hits, missing_note

    index = SearchIndex.load(db.con, encoder)
    if index.missing:
        print(f"autointerp search: note: {missing_note(index.missing, str(db.path))}", file=sys.stderr)
    return hits(db.con, index, index.query(text, k, keyword))
