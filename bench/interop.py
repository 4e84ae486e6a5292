"""Benchmark of export and import on an existing collect database.

1. Neuronpedia export: records/s and output size; peak Python memory (tracemalloc) exporting a quarter
   of the latents and all of them: export streams when the ratio stays near 1, not near 4.
2. Parquet export of every view: seconds and size.
3. delphi import: a results folder with an explanation for every latent, imported (latents/s).

    python bench/interop.py --db demo.duckdb

The database is copied to a temporary folder first and never written. Prints progress lines, then one
JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autointerp.interop.delphi import read_delphi  # noqa: E402
from autointerp.interop.importer import store  # noqa: E402
from autointerp.interop.neuronpedia import export_neuronpedia  # noqa: E402
from autointerp.interop.parquet import export_parquet  # noqa: E402
from autointerp.store.db import connect  # noqa: E402


def size_mb(folder: Path) -> float:
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20, 2)


def peak_memory(db: Path, out: Path, latents: str) -> int:
    tracemalloc.start()
    export_neuronpedia(db, out, "0-bench", latents=latents, overwrite=True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="a database written by `autointerp collect`")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        db = tmp / "bench.duckdb"
        shutil.copy(args.db, db)
        con = connect(db, read_only=True)
        n_latents = con.execute("SELECT count(*) FROM latents").fetchone()[0]
        con.close()

        start = time.perf_counter()
        result = export_neuronpedia(db, tmp / "np", "0-bench")
        np_seconds = time.perf_counter() - start
        n_records = sum(result.records.values())
        print(f"neuronpedia: {n_records:,} records in {np_seconds:.2f} s", file=sys.stderr)

        quarter = peak_memory(db, tmp / "np-mem", f"0-{n_latents // 4 - 1}")
        whole = peak_memory(db, tmp / "np-mem", "")
        print(
            f"peak Python memory: {quarter / 2**20:.1f} MiB (1/4 of the latents), {whole / 2**20:.1f} MiB (all)",
            file=sys.stderr,
        )

        start = time.perf_counter()
        export_parquet(db, tmp / "parquet")
        pq_seconds = time.perf_counter() - start
        print(f"parquet: {pq_seconds:.2f} s", file=sys.stderr)

        folder = tmp / "delphi" / "explanations"
        folder.mkdir(parents=True)
        for latent in range(n_latents):
            (folder / f"layers.14_latent{latent}.txt").write_text(json.dumps(f"explanation of latent {latent}"))
        start = time.perf_counter()
        imported = store(db, read_delphi(folder.parent))
        import_seconds = time.perf_counter() - start
        print(f"delphi import: {imported.explained:,} explanations in {import_seconds:.2f} s", file=sys.stderr)

        print(
            json.dumps(
                {
                    "latents": n_latents,
                    "neuronpedia_records": n_records,
                    "neuronpedia_seconds": round(np_seconds, 2),
                    "neuronpedia_records_per_s": round(n_records / np_seconds),
                    "neuronpedia_mb": size_mb(tmp / "np"),
                    "peak_mib_quarter": round(quarter / 2**20, 1),
                    "peak_mib_all": round(whole / 2**20, 1),
                    "peak_ratio_all_over_quarter": round(whole / quarter, 2),
                    "parquet_seconds": round(pq_seconds, 2),
                    "parquet_mb": size_mb(tmp / "parquet"),
                    "delphi_import_seconds": round(import_seconds, 2),
                    "delphi_import_latents_per_s": round(imported.explained / import_seconds),
                }
            )
        )


if __name__ == "__main__":
    main()
