"""The ``autointerp`` command.

Options of each stage come from its config dataclass: one flag per field, with the field's docstring
as help, so the documentation lives in one place.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import typing

from .browse import command as browse_command
from .collect import lens_command, similar_command
from .compare import command as compare_command
from .config import ALL_TOKENS, CollectConfig, ExecutorConfig, ExplainConfig, ScoreConfig
from .config_fields import field_docs
from .demo import command as demo_command
from .errors import AutointerpError
from .failures import explain_failure
from .interop import export_command, import_command
from .plan import command as plan_command
from .plan import cost_command
from .query import search_command
from .query import sql as sql_command
from .redact import install_log_redaction
from .score import steer_command
from .signals import SIGTERM_EXIT_STATUS, TERMINATED, Terminated, sigterm_raises


class JoinRepeated(argparse.Action):
    """A flag that may be given several times, its values joined with commas (--base-url A --base-url B)."""

    def __call__(self, parser, namespace, values, option_string=None):
        earlier = getattr(namespace, self.dest, None)
        given = [] if earlier in (None, self.default) else [earlier]
        setattr(namespace, self.dest, ",".join([*given, values]))


#: Config fields whose flag may be repeated.
REPEATABLE = {"base_url"}


def tokens_arg(text: str) -> int | str:
    """--tokens: a whole number of tokens, or "all"."""
    if text.strip().lower() == ALL_TOKENS:
        return ALL_TOKENS
    text = text.strip().replace("_", "")
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f'{text!r} is not a whole number of tokens or "all"')
    return int(text)


#: Config fields whose flag value is read by a function of its own rather than by the field's type.
CONVERTERS = {"tokens": tokens_arg}


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, skip=()) -> None:
    """One flag per field of the config dataclass ``cls`` (but those named in ``skip``)."""
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        flag = "--" + field.name.replace("_", "-")
        kind = CONVERTERS.get(field.name, hints[field.name])
        help_text = f"{docs.get(field.name, '')} (default: {field.default!r})"
        if kind is bool:
            parser.add_argument(
                flag, dest=field.name, action=argparse.BooleanOptionalAction, default=field.default, help=help_text
            )
        else:
            parser.add_argument(
                flag,
                dest=field.name,
                type=kind,
                default=field.default,
                help=help_text,
                metavar=field.name.upper(),
                action=JoinRepeated if field.name in REPEATABLE else "store",
            )


def config_from_args(cls: type, args: argparse.Namespace):
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autointerp", description="Explain and score every latent of an SAE.")
    parser.add_argument("--log-level", default="WARNING", help="logging level (DEBUG, INFO, WARNING)")
    sub = parser.add_subparsers(dest="command", required=True)

    collect = sub.add_parser(
        "collect",
        help="sample: run the model and the SAE over a corpus and store every latent's contexts",
        description="Run the subject model and a dictionary (an SAE or transcoder of any supported format, or "
        "the model's own MLP neurons: --sae neurons:MODULE[:topk=K]) over a corpus and store, per "
        "latent, its top, quantile and random contexts and statistics in a DuckDB file. With no "
        "model, SAE or dataset arguments it uses the embedded default (SmolLM2-135M-Instruct, the "
        "SAE in data/, Wikipedia summaries).",
    )
    collect.add_argument("--db", help="DuckDB file to write (created if missing)")
    collect.add_argument(
        "--jobs",
        metavar="FILE",
        help="several collects in one job instead of --db: a JSON list of objects, each with a "
        '"db" and any options that differ from the flags (e.g. "sae", "hookpoint"), '
        "named as in the config (sae_hookpoint); with --executor ray they share the workers",
    )
    collect.add_argument(
        "--overwrite", action="store_true", help="replace the results of an earlier collect with another configuration"
    )
    collect.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_arguments(collect, CollectConfig)
    add_config_arguments(collect.add_argument_group("executor (Ray scale-out)"), ExecutorConfig)

    explain = sub.add_parser(
        "explain",
        help="explain: ask an LLM to explain every latent from its explain-set examples",
        description="Explain every explainable latent of a collect database with an LLM (in-process, vLLM or "
        "any OpenAI-compatible API). Resumable: finished latents are skipped; every call is logged "
        "in llm_calls. With no backend arguments it uses the embedded SmolLM2-135M-Instruct.",
    )
    explain.add_argument("--db", required=True, help="DuckDB file written by `autointerp collect`")
    explain.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_arguments(explain, ExplainConfig)
    add_config_arguments(explain.add_argument_group("executor (Ray scale-out)"), ExecutorConfig)

    score = sub.add_parser(
        "score",
        help="score: measure how well each explanation predicts its latent's test set",
        description="Score explanations on each latent's test set (which shares no context with the explain "
        "set): detection (does the excerpt activate the latent?) and fuzzing (are the marked tokens "
        "the active ones?), with balanced accuracy, precision, recall, F1, AUROC (with logprobs), "
        "per-quantile recall and chance levels. Resumable; every call is logged in llm_calls.",
    )
    score.add_argument("--db", required=True, help="DuckDB file with explanations")
    score.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_arguments(score, ScoreConfig)
    add_config_arguments(score.add_argument_group("executor (Ray scale-out)"), ExecutorConfig)
    export_command.add_parser(sub)
    import_command.add_parser(sub)
    browse_command.add_parser(sub)
    sql_command.add_parser(sub)
    search_command.add_parser(sub)
    demo_command.add_parser(sub)
    lens_command.add_parser(sub)
    similar_command.add_parser(sub)
    steer_command.add_parser(sub)
    plan_command.add_parser(sub, add_config_arguments)
    cost_command.add_parser(sub)
    compare_command.add_parser(sub)
    return parser


def run_collect(args: argparse.Namespace) -> int:
    from .collect.decoder_neighbours import describe_neighbours
    from .collect.logit_lens import describe_lens
    from .collect.stage import collect_many
    from .scale import make_executor

    config = config_from_args(CollectConfig, args)
    executor = config_from_args(ExecutorConfig, args)
    if (args.db is None) == (args.jobs is None):
        raise AutointerpError(
            "collect needs exactly one of --db and --jobs.", "--db PATH for one collect, or --jobs FILE for several."
        )
    jobs = read_jobs(args.jobs, config) if args.jobs else [(config, args.db)]
    results = collect_many(jobs, overwrite=args.overwrite, progress=not args.quiet, executor=make_executor(executor))
    for (job_config, db), result in zip(jobs, results, strict=True):
        if result.skipped:
            print(f"{db}: an identical collect is already complete (run {result.run_id}); nothing to do.")
            if job_config.lens_k and not stored_lens(db):
                print(f"{db}: it has no logit lens (collected before it existed): autointerp lens --db {db}")
            if job_config.neighbours_k and not stored_neighbours(db):
                print(
                    f"{db}: it has no decoder neighbours (collected before they existed): autointerp similar --db {db}"
                )
        else:
            counts = result.status_counts or {}
            print(
                f"{db}: run {result.run_id}: {result.n_tokens:,} tokens in {result.seconds:.0f} s "
                f"({result.tokens_per_second:,.0f} tokens/s); latents: {counts.get('ok', 0)} ok, "
                f"{counts.get('too_few_examples', 0)} with too few examples, {counts.get('dead', 0)} dead."
            )
            if result.lens is not None:
                print(f"{db}: {describe_lens(result.lens, job_config.lens_k)}")
            if result.neighbours is not None:
                print(f"{db}: {describe_neighbours(result.neighbours, job_config.neighbours_k)}")
        print_coverage(db)
        warn_budget(db, job_config)
    print(
        f"Query it: python -c \"import duckdb; print(duckdb.connect('{jobs[0][1]}', read_only=True).sql("
        "'SELECT * FROM latents ORDER BY frequency DESC LIMIT 10'))\""
    )
    return 0


def stored_lens(db: str) -> bool:
    """Whether the database at ``db`` holds a logit lens of its current collect."""
    from .store.db import connect
    from .store.logit_lens import has_logit_lens

    con = connect(db, read_only=True)
    try:
        return has_logit_lens(con)
    finally:
        con.close()


def stored_neighbours(db: str) -> bool:
    """Whether the database at ``db`` holds decoder neighbours of its current collect."""
    from .store.db import connect
    from .store.decoder_neighbours import has_decoder_neighbours

    con = connect(db, read_only=True)
    try:
        return has_decoder_neighbours(con)
    finally:
        con.close()


def print_coverage(db: str) -> None:
    """The coverage section of the database at ``db`` (per decade of firing frequency), after a stage."""
    from .query.coverage import coverage_section

    section = coverage_section(db)
    if section:
        print("\n" + section)


def print_plan_beside_actuals(db: str, stage: str, run_id: str, config) -> None:
    """The run's actual calls and tokens (``llm_calls``) beside ``autointerp plan``'s count of the same
    latents; a plan that cannot be made is said on stderr (the run itself is stored)."""
    from .plan.actuals import plan_beside_actuals, render_beside
    from .plan.tokenizer import load_tokenizer
    from .store.db import connect

    try:
        con = connect(db, read_only=True)
        try:
            found = plan_beside_actuals(con, db, stage, run_id, config, load_tokenizer(config.backend, config.model))
        finally:
            con.close()
    except Exception as exc:  # noqa: BLE001 - the run is stored and reported; its plan is an extra
        print(f"autointerp {stage}: no plan beside the actuals: {exc}", file=sys.stderr)
        return
    if found is not None:
        print("\n" + render_beside(*found))


def warn_budget(db: str, config: CollectConfig) -> None:
    """Warn (on stderr) when the token budget left too many live latents under the minimum."""
    from .collect.budget import budget_warning
    from .store.db import connect

    con = connect(db, read_only=True)
    try:
        warning = budget_warning(con, config)
    finally:
        con.close()
    if warning:
        print(f"autointerp collect: warning: {warning}", file=sys.stderr)


def read_jobs(path: str, base: CollectConfig) -> list[tuple[CollectConfig, str]]:
    """The --jobs file: a JSON list of {"db": ..., option: value, ...}; options default to the flags'."""
    import json
    from pathlib import Path

    names = {f.name for f in dataclasses.fields(CollectConfig)}
    try:
        entries = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise AutointerpError(
            f"Cannot read the jobs file {path}: {exc}",
            'a JSON list like [{"db": "l6.duckdb", "hookpoint": "model.layers.6"}, ...].',
        ) from None
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) and "db" in e for e in entries):
        raise AutointerpError(
            f'The jobs file {path} is not a non-empty list of objects with a "db".',
            'a JSON list like [{"db": "l6.duckdb", "hookpoint": "model.layers.6"}, ...].',
        )
    jobs = []
    for k, entry in enumerate(entries):
        unknown = sorted(set(entry) - names - {"db"})
        if unknown:
            raise AutointerpError(
                f"Job {k} of {path} has unknown option(s): {', '.join(unknown)}.",
                "options of `autointerp collect`, named as in the config: " + ", ".join(sorted(names)),
            )
        jobs.append((dataclasses.replace(base, **{key: v for key, v in entry.items() if key != "db"}), entry["db"]))
    return jobs


def require_database(db: str) -> None:
    """Refuse a --db path with no file: opening it for writing would leave a new empty database."""
    from pathlib import Path

    if not Path(db).is_file():
        raise AutointerpError(
            f"No database at {db}.",
            "a database written by `autointerp collect`.",
            "check the --db path, or run `autointerp collect --db PATH` first.",
        )


def run_explain(args: argparse.Namespace) -> int:
    import asyncio

    from .explain.stage import explain
    from .scale import make_executor

    config = config_from_args(ExplainConfig, args)
    executor = config_from_args(ExecutorConfig, args)
    require_database(args.db)
    r = asyncio.run(explain(config, args.db, progress=not args.quiet, executor=make_executor(executor)))
    print(
        f"{args.db}: run {r.run_id}: {r.explained} explained, {r.unparsed} unparsed, {r.failed} failed "
        f"of {r.todo} latents in {r.seconds:.0f} s ({r.calls} calls, {r.prompt_tokens:,} prompt + "
        f"{r.completion_tokens:,} completion tokens); {r.skipped_done} already done, "
        f"{r.not_explainable} not explainable (see latents.reason)."
    )
    if r.calls:
        print_plan_beside_actuals(args.db, "explain", r.run_id, config)
    print_coverage(args.db)
    return 0 if r.failed == 0 else 1


def run_score(args: argparse.Namespace) -> int:
    import asyncio

    from .scale import make_executor
    from .score.stage import score

    config = config_from_args(ScoreConfig, args)
    executor = config_from_args(ExecutorConfig, args)
    require_database(args.db)
    r = asyncio.run(score(config, args.db, progress=not args.quiet, executor=make_executor(executor)))
    print(
        f"{args.db}: run {r.run_id}: {r.scored} scores, {r.unscored} unscored (no readable answer) in "
        f"{r.seconds:.0f} s ({r.calls} calls, {r.prompt_tokens:,} prompt + {r.completion_tokens:,} completion "
        f"tokens); {r.skipped_done} already done. Query: SELECT * FROM scores"
    )
    if r.calls:
        print_plan_beside_actuals(args.db, "score", r.run_id, config)
    print_coverage(args.db)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    install_log_redaction()
    handlers = {"collect": run_collect, "explain": run_explain, "score": run_score}
    handlers.update({"export": export_command.run, "import": import_command.run})
    handlers["browse"] = browse_command.run
    handlers["sql"] = sql_command.run
    handlers["search"] = search_command.run
    handlers["demo"] = demo_command.run
    handlers["lens"] = lens_command.run
    handlers["similar"] = similar_command.run
    handlers["steer"] = steer_command.run
    handlers["plan"] = plan_command.run
    handlers["cost"] = cost_command.run
    handlers["compare"] = compare_command.run
    try:
        with sigterm_raises():
            return handlers[args.command](args)
    except AutointerpError as exc:
        print(f"autointerp {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"autointerp {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"autointerp {args.command}: {TERMINATED}", file=sys.stderr)
        return SIGTERM_EXIT_STATUS
    except Exception as exc:
        error = explain_failure(exc)  # a full disk or a damaged file: not a bug, so no traceback
        if error is None:
            raise
        print(f"autointerp {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
