"""Benchmark of the feature browser at SAE scale.

Builds a synthetic database (no model needed) with N latents (default 1,000,000), an explanation and
two scores for most of them and a few contexts each, then measures through the real HTTP server:
  - the server's start (it computes the list table once);
  - the list API: first page by latent, sorted by a score column, sorted by frequency at a deep
    offset, a full-text search, a status filter (median of repeats, in ms);
  - a latent page (HTML) and its JSON;
  - the static writer on a range of latents (pages per second).

    python bench/browse.py [--latents 1000000] [--static-latents 2000]

Prints progress lines, then one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autointerp.browse.server import make_server  # noqa: E402
from autointerp.browse.static import write_static  # noqa: E402
from autointerp.store.db import connect  # noqa: E402

WORDS = [
    "rivers",
    "dates",
    "years",
    "names",
    "music",
    "cities",
    "numbers",
    "the",
    "legal",
    "terms",
    "chemistry",
    "sports",
    "plural",
    "nouns",
    "verbs",
    "code",
    "French",
    "German",
    "colours",
    "animals",
]


def build(path: Path, n: int, window: int = 32, per_latent: int = 4, n_contexts: int = 20_000) -> None:
    """A database with the shape of a real one: every table the browser reads, filled by SQL."""
    con = connect(path)
    con.execute(
        "INSERT INTO collections VALUES ('bench', 'synthetic', 'model.layers.8', 'synthetic', 'synthetic', "
        "?, 100000, 25600000, 256, ?, [0.001, 0.01, 0.1, 1.0, 10.0])",
        [n, window],
    )
    con.execute(f"""
        INSERT INTO latent_stats SELECT 'bench', i, 'model.layers.8', (hash(i) % 100000)::BIGINT, 25600000,
            (hash(i) % 100000) / 25600000.0, 1 + (hash(i * 7) % 1000) / 37.0, 1 + (hash(i * 7) % 1000) / 90.0,
            (hash(i) % 5000)::BIGINT, [1, 2, 3, 4, 5], [1.0, 2.0],
            CASE WHEN i % 50 = 0 THEN 'dead' ELSE 'ok' END, NULL FROM range({n}) t(i)""")
    con.execute(f"""
        INSERT INTO contexts SELECT c, 'bench', c, 0, list_transform(range({window}), lambda x: (x + c) % 49152)::INTEGER[],
            list_transform(range({window}), lambda x: ' ' || {WORDS!r}[1 + ((x + c) % {len(WORDS)})]) FROM range({n_contexts}) t(c)""")
    con.execute(f"""
        INSERT INTO latent_examples (run_id, latent, split, kind, quantile, rank, context_id, activations, max_activation) SELECT 'bench', i, CASE WHEN k < 2 THEN 'explain' ELSE 'test' END,
            CASE WHEN k = 0 THEN 'top' ELSE 'quantile' END, CASE WHEN k = 0 THEN NULL ELSE k END, 0,
            hash(i * 31 + k) % {n_contexts},
            list_transform(range({window}), lambda x: CASE WHEN x = 24 THEN 5.0 ELSE (hash(i + x) % 3)::FLOAT END)::FLOAT[], 5.0
        FROM range({n}) t(i), range({per_latent}) u(k)""")
    con.execute(f"""
        INSERT INTO explanation_rows SELECT i, 'cfg', 'bench', 'default', 'bench-model', 'explained',
            {WORDS!r}[1 + (hash(i) % {len(WORDS)})::BIGINT] || ' and ' || {WORDS!r}[1 + (hash(i * 3) % {len(WORDS)})::BIGINT],
            NULL, NULL, NULL, 1, 100, 20, TIMESTAMP '2024-01-01' FROM range({n}) t(i) WHERE i % 10 <> 9""")
    for k, scorer in enumerate(("detection", "fuzzing")):
        con.execute(f"""
            INSERT INTO score_rows (latent, explanation_id, scorer, model, config_hash, control, run_id, status,
                n_examples, n_unscored, balanced_accuracy, chance, n_calls, prompt_tokens, completion_tokens,
                fixed_prompt_tokens, created_at, score)
            SELECT i, 'cfg/' || i, '{scorer}', 'bench-model', 'sc', '', 'bench', 'scored', 50, 0,
                (hash(i + {k}) % 1000) / 1000.0, '{{"score": 0.5}}', 2, 1000, 10, 500, TIMESTAMP '2024-01-02',
                (hash(i + {k}) % 1000) / 1000.0
            FROM range({n}) t(i) WHERE i % 10 <> 9""")
    con.close()


def timed(url: str, repeats: int) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        with urllib.request.urlopen(url, timeout=300) as resp:
            size = len(resp.read())
            assert resp.status == 200
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latents", type=int, default=1_000_000)
    parser.add_argument("--static-latents", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.duckdb"
        start = time.perf_counter()
        build(db, args.latents)
        print(
            f"built a {args.latents:,}-latent database in {time.perf_counter() - start:.1f} s "
            f"({db.stat().st_size / 1e6:.0f} MB)",
            flush=True,
        )
        start = time.perf_counter()
        server = make_server(db, "127.0.0.1", 0)  # includes computing the list table once
        server_start_s = time.perf_counter() - start
        print(f"server ready in {server_start_s:.2f} s", flush=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        mid = args.latents // 2 + 1
        cases = {
            "list_first_page_ms": "api/latents?limit=100",
            "list_sort_score_ms": "api/latents?sort=score:detection&order=desc&limit=100",
            "list_sort_frequency_deep_offset_ms": f"api/latents?sort=frequency&order=desc&limit=100&offset={args.latents // 2}",
            "list_search_ms": "api/latents?q=rivers%20music&limit=100",
            "list_filter_status_ms": "api/latents?status=dead&sort=max_activation&order=desc&limit=100",
            "latent_page_ms": f"latents/{mid}.html",
            "latent_json_ms": f"api/latents/{mid}",
        }
        result: dict = {"latents": args.latents, "server_start_s": round(server_start_s, 2)}
        for name, path in cases.items():
            ms, size = timed(server.url + path, args.repeats)
            result[name] = round(ms, 1)
            print(f"{name}: {ms:.1f} ms ({size:,} bytes)", flush=True)
        server.shutdown()
        server.server_close()
        lo = args.latents // 3
        site = write_static(db, Path(tmp) / "site", latents=f"{lo}-{lo + args.static_latents - 1}")
        result["static_latents"] = site.n_latents
        result["static_seconds"] = round(site.seconds, 2)
        result["static_pages_per_s"] = round(site.n_latents / site.seconds, 1)
        print(f"static site of {site.n_latents:,} latents in {site.seconds:.1f} s", flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
