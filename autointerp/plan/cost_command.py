"""``autointerp cost``: what a database's runs spent, per explain strategy, run and purpose.

Calls, prompt, completion and cached prompt tokens per latent and in total, from the ``llm_calls`` log
through the ``llm_costs`` view; dollars with --price-in/--price-out (and --price-cached), validated as
``autointerp plan`` validates them.
"""

from __future__ import annotations

import argparse
import json

from ..store.db import connect
from .command import add_price_arguments, check_price_values
from .costs import Prices, cost_rows, render_costs, strategy_totals


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "cost",
        help="plan: what the runs of a database spent: calls, tokens, cached tokens and dollars per strategy",
        description="Read the call log of a database and print, per run and purpose and summed per explain "
        "strategy (single, best_of_k K, refined R) and stage: latents, calls, prompt, completion and cached "
        "prompt tokens per latent, and dollars with --price-in/--price-out. Cached tokens are what the backend "
        "reported, else (marked ~) an estimate from the prompt prefix shared with the latent's earlier calls.",
        epilog="example: autointerp cost --db demo.duckdb --price-in 0.15 --price-out 0.60 --price-cached 0.075",
    )
    parser.add_argument("--db", required=True, help="DuckDB file written by autointerp")
    add_price_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print a JSON object instead of the table")
    return parser


def prices_of(args: argparse.Namespace) -> Prices | None:
    """The prices the flags give (validated), or None when none is given."""
    check_price_values(args)
    if args.price_in is None and args.price_out is None and args.price_cached is None:
        return None
    return Prices(args.price_in or 0.0, args.price_out or 0.0, args.price_cached)


def run(args: argparse.Namespace) -> int:
    prices = prices_of(args)
    con = connect(args.db, read_only=True)
    try:
        rows = cost_rows(con, prices)
    finally:
        con.close()
    if args.json:
        out = {
            "db": str(args.db),
            "runs": [r.to_dict() for r in rows],
            "strategies": [t.to_dict() for t in strategy_totals(rows)],
        }
        if prices is not None:
            out["prices_per_million"] = {"in": prices.prompt, "cached": prices.cached_price, "out": prices.completion}
        print(json.dumps(out, indent=2))
    else:
        print(render_costs(rows, prices))
    return 0
