"""The ``autointerp browse`` subcommand: serve the browser, or write it as a static site."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "browse",
        help="browse: a latent list and a page per latent, served locally or written as a static site",
        description="Browse a database: a list of latents with their explanation, scores and frequency (sortable, "
        "filterable, searchable), and a page per latent with its top and quantile contexts shaded by "
        "activation, the scorers' verdicts on each context and the intervention completions. Serves on "
        "127.0.0.1 until interrupted, or with --static writes a site that opens from file://.",
    )
    parser.add_argument("--db", required=True, help="DuckDB file written by autointerp (opened read-only)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)"
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks a free one (default: 0)")
    parser.add_argument(
        "--static",
        metavar="DIR",
        default=None,
        help="write a static site into DIR instead of serving (DIR must be new, empty or an earlier site)",
    )
    parser.add_argument(
        "--latents", default="", metavar="RANGES", help="only these latents, as ranges like 0-999,1500 (default: all)"
    )
    parser.add_argument(
        "--chunk-size", type=int, default=1000, help="static site: latents per list data file (default: 1000)"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="static site: write into a folder of other files, replacing same-named ones (the rest are kept)",
    )
    parser.add_argument(
        "--matches",
        metavar="M.duckdb",
        default=None,
        help="a comparison file of `autointerp compare`: each latent page also shows its matched latent in the "
        "compared SAE (opened read-only, with that SAE's database)",
    )
    parser.add_argument("--open", action="store_true", help="open the list in the default web browser")
    return parser


def run(args: argparse.Namespace) -> int:
    import webbrowser

    if args.static is not None:
        from .static import write_static

        site = write_static(
            args.db,
            args.static,
            latents=args.latents,
            chunk_size=args.chunk_size,
            overwrite=args.overwrite,
            matches=args.matches,
        )
        url = site.index.as_uri()
        print(
            f"{args.db}: wrote {site.n_latents:,} latent pages and {site.n_chunks} list data files to "
            f"{site.path} in {site.seconds:.1f} s. Open {url}"
        )
        if args.open:
            webbrowser.open(url)
        return 0

    from .interrupt import restore_ctrl_c
    from .server import make_server

    server = make_server(args.db, args.host, args.port, latents=args.latents, matches=args.matches)
    restore_ctrl_c()
    try:  # from the first line a user may act on: a Ctrl-C right after it is a clean stop too
        print(f"Serving {args.db} at {server.url} (Ctrl-C stops)", flush=True)
        if args.open:
            webbrowser.open(server.url)
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0
