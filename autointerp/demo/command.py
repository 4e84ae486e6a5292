"""The ``autointerp demo`` subcommand: the whole pipeline on the embedded default, then the browser.

Each stage runs in this process through its Python function and keeps its own resume rule (collect
skips an identical finished collect, explain and score skip finished latents), and the latents are
chosen from the collect's deterministic results, so rerunning the demo after an interruption picks up
where it stopped and a finished demo only prints its summary again.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time
from pathlib import Path

from ..errors import AutointerpError
from ..query.coverage import coverage_section
from . import settings as demo_settings
from .choose import choose_latents
from .output_side import gather_output_side, render_output_side
from .report import gather, render


def list_view(sort_scorer: str) -> str:
    """The list page's state (it reads it from the URL's fragment): explained latents, best first."""
    return "#explained=1" + (f"&sort=score:{sort_scorer}&order=desc" if sort_scorer else "")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo",
        help="demo: collect -> explain -> score a few latents on the embedded default, then browse",
        description="Run the whole pipeline on the embedded default (SmolLM2-135M-Instruct, the SAE in data/, "
        "Wikipedia summaries): collect, explain a few latents spread over firing frequencies, score "
        "them (detection, fuzzing, embedding, and the embedding scorer's shuffled-explanation "
        "control; Arad et al.'s input and output scores, which need no LLM), print a summary with "
        "the best steering candidates and serve the browser on 127.0.0.1 until Ctrl-C. Rerunning "
        "resumes: finished stages and latents are skipped.",
    )
    parser.add_argument("--db", default="demo.duckdb", help="DuckDB file to write (default: demo.duckdb)")
    parser.add_argument(
        "--latents", type=int, default=8, metavar="N", help="how many latents to explain and score (default: 8)"
    )
    parser.add_argument(
        "--tokens", type=int, default=200_000, metavar="T", help="corpus tokens to collect over (default: 200000)"
    )
    parser.add_argument(
        "--no-browse",
        dest="browse",
        action="store_false",
        help="print the `autointerp browse` command instead of serving the browser",
    )
    parser.add_argument(
        "--port", type=int, default=0, metavar="P", help="browser port; 0 picks a free one (default: 0)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    advanced = parser.add_argument_group(
        "advanced",
        "The demo's settings of each stage; KEY is a field of `autointerp collect|explain|score --help` "
        "(with _ or -), e.g. --collect n_quantiles=5 --score batch_size=10 --explain backend=openai.",
    )
    advanced.add_argument(
        "--scorers",
        default=demo_settings.DEFAULT_SCORERS,
        help=f"scorers to run (default: {demo_settings.DEFAULT_SCORERS})",
    )
    advanced.add_argument(
        "--control-scorers",
        default=demo_settings.DEFAULT_CONTROL_SCORERS,
        help="scorers also run with --control shuffled (another latent's explanation); 'none' "
        f"for none (default: {demo_settings.DEFAULT_CONTROL_SCORERS})",
    )
    for stage in ("collect", "explain", "score"):
        advanced.add_argument(
            f"--{stage}",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=f"override one setting of the {stage} stage (repeatable)",
        )
    return parser


def check_options(args: argparse.Namespace) -> demo_settings.DemoSettings:
    """Every option validated before anything is loaded or written."""
    if args.latents < 1:
        raise AutointerpError(f"--latents {args.latents} explains nothing.", "a positive number of latents, e.g. 8.")
    if not 0 <= args.port <= 65535:
        raise AutointerpError(f"--port {args.port} is not a port number.", "0 (any free port) to 65535.")
    db = Path(args.db)
    if db.exists() and not db.is_file():
        raise AutointerpError(f"--db {db} is not a file.", "a DuckDB file path (created if missing).")
    s = demo_settings.build_settings(
        args.tokens, args.scorers, args.control_scorers, args.collect, args.explain, args.score
    )
    if "embedding" in s.scorers + s.control_scorers and not s.score.embedding_model:
        from ..score.embedding import default_model_path

        default_model_path()  # fails now, with how to install it, rather than after collect and explain
    return s


def _quiet_model_loading() -> None:
    """No progress bars from transformers while models load (the stages' own bars are off already)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _say(text: str) -> None:
    print(text, flush=True)


def step_collect(s: demo_settings.DemoSettings, db: Path, progress: bool) -> None:
    from ..collect.stage import collect

    try:
        r = collect(s.collect, db, progress=progress)
    except AutointerpError as exc:
        if "--overwrite" not in (exc.fix or ""):
            raise
        # the database holds another collect; the demo has no --overwrite to offer
        raise AutointerpError(
            exc.what, exc.expected, f"the demo collects with its own settings: pass another --db, or delete {db}."
        ) from exc
    if r.skipped:
        _say(f"      already collected (run {r.run_id}): skipped")
    else:
        counts = r.status_counts or {}
        _say(
            f"      {r.n_tokens:,} tokens in {r.seconds:.0f} s; {counts.get('ok', 0)} latents explainable, "
            f"{counts.get('too_few_examples', 0)} with too few examples, {counts.get('dead', 0)} dead"
        )


def step_explain(s: demo_settings.DemoSettings, db: Path, spec: str, progress: bool):
    from ..explain.stage import explain

    r = asyncio.run(explain(dataclasses.replace(s.explain, latents=spec), db, progress=progress))
    _say(
        f"      {r.explained} explained, {r.unparsed} unparsed, {r.failed} failed in {r.seconds:.0f} s "
        f"({r.calls} LLM calls); {r.skipped_done} already done"
    )
    return r


def explained_latents(db: Path, latents: list[int]) -> list[int]:
    from ..store.db import connect

    con = connect(db, read_only=True)
    try:
        return [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT latent FROM explanations WHERE status = 'explained' "
                "AND latent IN (SELECT unnest(?::INTEGER[])) ORDER BY latent",
                [latents],
            ).fetchall()
        ]
    finally:
        con.close()


def explainer_of(db: Path, run_id: str) -> str:
    """The explainer configuration hash of the explain run ``run_id`` ('' if it left no run row)."""
    from ..store.db import connect

    con = connect(db, read_only=True)
    try:
        row = con.execute("SELECT config_hash FROM runs WHERE run_id = ?", [run_id]).fetchone()
    finally:
        con.close()
    return row[0] if row else ""


def step_score(
    s: demo_settings.DemoSettings, db: Path, spec: str, progress: bool, n_explained: int, explanations: str = ""
) -> None:
    """Score the demo latents' explanations of this demo's explainer (``explanations``, its configuration
    hash, so that explanations of other settings on the same database never blend in), then the shuffled
    and the empty-explanation controls of ``s.control_scorers``."""
    from ..score.stage import score

    if n_explained == 0:
        _say("      no demo latent has an explanation, so there is nothing to score")
        return
    base = dataclasses.replace(s.score, latents=spec, explanations=explanations)
    r = asyncio.run(score(base, db, progress=progress))
    _say(
        f"      {r.scored} scores, {r.unscored} unscored in {r.seconds:.0f} s ({r.calls} LLM calls); "
        f"{r.skipped_done} already done"
    )
    if not s.control_scorers:
        return
    controls = ("shuffled", "empty") if n_explained >= 2 else ("empty",)
    if n_explained < 2:
        _say("      shuffled control skipped: it needs two explained latents to swap explanations between")
    for control in controls:
        config = dataclasses.replace(base, scorers=",".join(s.control_scorers), control=control)
        r = asyncio.run(score(config, db, progress=progress))
        _say(
            f"      {control} control ({', '.join(s.control_scorers)}): {r.scored} scores, {r.unscored} unscored "
            f"in {r.seconds:.0f} s; {r.skipped_done} already done"
        )


def notes(s: demo_settings.DemoSettings, n: int) -> list[str]:
    """What the numbers can and cannot say, for the summary."""
    c = s.collect
    positives = c.n_quantiles * c.test_per_quantile
    out = [
        (
            f"Means are over the {n} demo latents, each scored on its own test set ({positives} activating + "
            f"{c.random_test} non-activating contexts, none of them shown to the explainer); ±2 SE is two standard "
            "errors over latents, and a mean whose band holds the chance level is 'at chance'. The mean counts "
            "each latent once; n-weighted weights each by n, the contexts its score rests on (n/latent: the "
            "fewest and most), so latents scored on small test sets count less."
        )
    ]
    if s.control_scorers:
        out.append(
            "The shuffled control scores each latent with another demo latent's explanation: the gap over "
            "it (paired by latent), not the distance from chance, says whether explanations are specific "
            "to their latent; a gap whose 95% interval holds 0 is no evidence that they are. The empty control "
            "scores an empty explanation: it should sit at chance, and a scorer far from chance there reads "
            "the label from a cue, not from the explanation."
        )
    local = [
        name
        for name, cfg in (("explainer", s.explain), ("scorer", s.score))
        if cfg.backend == "local" and not cfg.model
    ]
    if local:
        out.append(
            f"SmolLM2-135M-Instruct, a 135M-parameter model, is the {' and '.join(local)} here: a weak "
            "explainer and a weak scorer, so scores at chance say more about it than about the SAE. Run "
            "`autointerp explain` and `autointerp score` with --backend openai or vllm and a larger model "
            "for numbers worth reporting."
        )
    return out


def run(args: argparse.Namespace) -> int:
    from ..store.db import connect

    s = check_options(args)
    db = Path(args.db)
    progress = not args.quiet
    if args.quiet:
        _quiet_model_loading()
    start = time.perf_counter()
    _say(f"autointerp demo -> {db}: {demo_settings.summary_of(s)}")

    t = time.perf_counter()
    _say("[1/3] collect: the subject model and the SAE over the corpus")
    step_collect(s, db, progress)
    times = {"collect": time.perf_counter() - t}

    con = connect(db, read_only=True)
    try:
        latents = choose_latents(con, args.latents)
    finally:
        con.close()
    spec = ",".join(map(str, latents))
    _say(f"      demo latents (spread over firing frequencies): {spec}")

    t = time.perf_counter()
    _say(f"[2/3] explain: {len(latents)} latents with {s.explain.backend} {s.explain.model or 'SmolLM2-135M-Instruct'}")
    explained = step_explain(s, db, spec, progress)
    times["explain"] = time.perf_counter() - t

    t = time.perf_counter()
    have = explained_latents(db, latents)
    _say(
        f"[3/3] score: {', '.join(s.scorers)} on {len(have)} explained latents"
        + (f", and the shuffled and empty controls of {', '.join(s.control_scorers)}" if s.control_scorers else "")
    )
    step_score(s, db, spec, progress, len(have), explainer_of(db, explained.run_id))
    times["score"] = time.perf_counter() - t

    con = connect(db, read_only=True)
    try:
        summary = gather(con, latents, s.scorers)
        output_side = gather_output_side(con, latents)
    finally:
        con.close()
    total = time.perf_counter() - start
    _say("")
    # the output-side scores get their own section (log scale, per-latent chance), not the judged top table
    _say(render(summary, [name for name in s.scorers if name not in demo_settings.OUTPUT_SIDE_SCORERS]))
    _say("")
    _say(render_output_side(output_side))
    _say("")
    section = coverage_section(db)
    if section:
        _say(section)
        _say("")
    for line in notes(s, len(latents)):
        _say(line)
    _say("")
    _say(f"Demo done in {total / 60:.1f} min (" + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()) + ").")
    status = 0 if explained.failed == 0 else 1
    if not args.browse:
        _say(
            f"Browse it: autointerp browse --db {db}    Query it: autointerp sql --db {db} "
            '"SELECT * FROM latent_summary WHERE explanation IS NOT NULL"'
        )
        return status
    serve(db, args.port, list_view(summary.top_by))
    return status


def serve(db: Path, port: int, view: str) -> None:
    """The browser on 127.0.0.1 until Ctrl-C."""
    from ..browse.interrupt import restore_ctrl_c
    from ..browse.server import make_server

    server = make_server(db, "127.0.0.1", port)
    restore_ctrl_c()
    try:  # a Ctrl-C right after the URL is shown is a clean stop too
        _say(f"Browser: {server.url}{view}  (all latents: {server.url}; Ctrl-C ends)")
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
