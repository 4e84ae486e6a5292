"""``autointerp import``: explanations from a delphi results folder or a Neuronpedia export."""

from __future__ import annotations

import argparse

SOURCES = ("delphi", "neuronpedia")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "import",
        help="import: explanations from delphi or Neuronpedia, to score them here",
        description="Store the explanations of a delphi results folder or a Neuronpedia export (ours too) as one "
        "explanation configuration, import-<hash>, with explainer import:delphi or import:neuronpedia. "
        "Everything is checked before anything is written, in one transaction; importing the same source "
        "again does nothing. Score them with `autointerp score --explanations import-<hash>`.",
    )
    parser.add_argument("--db", required=True, help="DuckDB file written by `autointerp collect` with the same SAE")
    parser.add_argument("--from", dest="source_format", required=True, choices=SOURCES, help="delphi or neuronpedia")
    parser.add_argument(
        "--path",
        required=True,
        help="delphi: the results folder (results/<run name>) or its explanations/ folder; "
        "neuronpedia: an explanations file (.jsonl[.gz], .json) or a folder of them",
    )
    parser.add_argument(
        "--module",
        default="",
        help="delphi: the module (hookpoint) whose latents to import, e.g. layers.8; neuronpedia: the "
        "source id (layer), e.g. 14-res-jb. Needed when the source holds several",
    )
    parser.add_argument(
        "--model",
        default="",
        help="the explainer model to record (default: delphi's run_config.json explainer_model, or "
        "Neuronpedia's explanationModelName); for Neuronpedia it also keeps only that model's "
        "explanations when the export has several",
    )
    parser.add_argument(
        "--skip-unknown-latents",
        action="store_true",
        help="import the rest when some latents are outside the database's dictionary (counted), instead of stopping",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from .importer import store

    if args.source_format == "delphi":
        from .delphi import read_delphi as read
    else:
        from .neuronpedia_import import read_neuronpedia as read
    source = read(args.path, args.module, args.model)
    r = store(args.db, source, args.model, args.skip_unknown_latents)
    what = f"{source.kind} {source.path}" + (f" ({source.module})" if source.module else "")
    if r.already:
        print(f"{args.db}: {what} is already imported as explanations {r.config_hash} (run {r.run_id}); nothing to do.")
    else:
        print(
            f"{args.db}: run {r.run_id}: imported {r.explained:,} explanations from {what}"
            + (f", {r.unparsed:,} without one (stored as unparsed)" if r.unparsed else "")
            + (f", {r.skipped_unknown:,} latents outside the dictionary skipped" if r.skipped_unknown else "")
            + "."
        )
    for note in r.notes:
        print(f"Note: {note}.")
    if r.not_ok:
        print(
            f"Note: {r.not_ok:,} of these latents have no full test set (latents.status is not 'ok'); "
            "scoring skips them."
        )
    print(f"config_hash: {r.config_hash}")
    print(f"Score them: autointerp score --db {args.db} --explanations {r.config_hash}")
    return 0
