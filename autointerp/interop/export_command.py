"""``autointerp export``: the database as Parquet files, or as Neuronpedia JSONL batches."""

from __future__ import annotations

import argparse

FORMATS = ("parquet", "neuronpedia")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export",
        help="export: every public view as Parquet, or Neuronpedia-compatible JSONL batches",
        description="Export a database read-only. parquet: one <view>.parquet per public view (and the llm_calls "
        "and runs tables); scores and latent_summary carry each score's sample size and 95% interval. "
        "neuronpedia: <out>/<modelId>/<source>/{features,explanations,activations}/"
        "batch-<n>.jsonl with Neuronpedia's own field names (docs/interop.md), ready to upload or to "
        "compare with Neuronpedia's exports. Files are written under temporary names and renamed when "
        "complete; existing results are replaced only with --overwrite.",
    )
    parser.add_argument("--db", required=True, help="DuckDB file written by autointerp")
    parser.add_argument("--out", required=True, help="folder to write into (created if missing)")
    parser.add_argument("--format", required=True, choices=FORMATS, help="parquet or neuronpedia")
    parser.add_argument("--latents", default="", help="only these latents, e.g. 0-999,1500 (default: all)")
    parser.add_argument("--overwrite", action="store_true", help="replace earlier exported files")
    parser.add_argument(
        "--source",
        default="",
        help="neuronpedia: the source (SAE) id, Neuronpedia's `layer`: <layer>-<set name>, e.g. "
        "14-res-autointerp (required for this format)",
    )
    parser.add_argument(
        "--model-id",
        default="",
        help="neuronpedia: Neuronpedia's modelId (default: from the collect's model name: its last "
        "path component, lower-cased, e.g. google/gemma-2-2b -> gemma-2-2b)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=1024,
        help="neuronpedia: records per batch-<n>.jsonl file (Neuronpedia's exports use 1024)",
    )
    parser.add_argument(
        "--explanations",
        default="",
        help="neuronpedia: only explanations of this explainer configuration hash (default: every explained row)",
    )
    parser.add_argument(
        "--type-name", default="", help="neuronpedia: typeName of the explanations (default: autointerp_<explainer>)"
    )
    parser.add_argument(
        "--creator-id", default="", help="neuronpedia: user id written as authorId / creatorId (default: left out)"
    )
    parser.add_argument(
        "--gzip", action="store_true", help="neuronpedia: write batch-<n>.jsonl.gz, as Neuronpedia does"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import AutointerpError

    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise AutointerpError(
            f"--out {args.out} is a file.",
            "a folder to write the export into (created if missing).",
            "pass a folder path (a new one, or an earlier export's).",
        )
    if args.format == "parquet":
        from .parquet import export_parquet

        result = export_parquet(args.db, args.out, args.latents, args.overwrite)
        for name, path in result.files.items():
            print(f"{path}: {result.rows[name]:,} rows")
        return 0
    from .neuronpedia import export_neuronpedia

    r = export_neuronpedia(
        args.db,
        args.out,
        args.source,
        args.model_id,
        args.latents,
        args.batch_size,
        args.overwrite,
        args.explanations,
        args.creator_id,
        args.type_name,
        args.gzip,
    )
    print(
        f"{r.folder}: modelId {r.model_id} (from {r.model_id_from}), source {r.source}: "
        + ", ".join(f"{r.records[k]:,} {k} in {r.files[k]} files" for k in r.records)
    )
    return 0
