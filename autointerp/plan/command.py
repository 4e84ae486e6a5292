"""``autointerp plan``: what an explain and score run will cost before it runs.

Counts, from the real prompts built by the stages' own code and tokenized with the target model's
tokenizer (or a stated approximation), the calls, prompt tokens (the prefix a prefix cache can serve and
the uncached rest) and completion-token budget per purpose and in total; dollars with prices; and with
``--calibrate`` an expected wall time measured on the chosen backend.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing

from ..config import ExplainConfig, LLMConfig, ScoreConfig
from ..config_fields import field_docs
from ..errors import AutointerpError
from ..store.db import connect

FORMATS = ("table", "json")
#: Fields both stages have with different meanings or defaults: given, a flag applies to every planned
#: stage; not given, each stage keeps its own default.
SHARED = ("max_tokens", "temperature", "mark_threshold")
#: Requests --calibrate sends when given no number.
DEFAULT_CALIBRATE = 4


def add_parser(subparsers, add_config_arguments) -> argparse.ArgumentParser:
    """The ``plan`` subcommand; ``add_config_arguments(parser, cls, skip)`` adds a config class's flags
    (the CLI's own, so flags read as in explain and score)."""
    parser = subparsers.add_parser(
        "plan",
        help="plan: count the calls, tokens, dollars (and, calibrated, hours) an explain and score run will cost",
        description="Count what `autointerp explain` and `autointerp score` would send over a collect database "
        "with the same options, before sending anything: calls, prompt tokens (the prefix a prefix cache can "
        "serve and the uncached rest) and the completion-token budget, per purpose, per latent and in total, "
        "from the real prompts tokenized with the model's tokenizer (or a stated approximation). Dollars with "
        "--price-in/--price-out; an expected wall time with --calibrate.",
    )
    parser.add_argument("--db", required=True, help="DuckDB file written by `autointerp collect`")
    parser.add_argument(
        "--stages", default="explain,score", help="stages to plan: explain, score or explain,score (default)"
    )
    parser.add_argument(
        "--tokenizer",
        default="",
        help="local Hugging Face folder (or cached hub name) whose tokenizer counts; default: the model's "
        "when on this machine (the embedded SmolLM2's for the local backend), else 4 characters per token",
    )
    parser.add_argument(
        "--explanation-tokens",
        type=int,
        default=None,
        metavar="N",
        help="length of the placeholder explanation scored where a latent has none yet (default: the mean "
        "of the database's explanations, or 20)",
    )
    add_price_arguments(parser)
    parser.add_argument(
        "--calibrate",
        type=int,
        nargs="?",
        const=DEFAULT_CALIBRATE,
        default=0,
        metavar="N",
        help=f"send N (default {DEFAULT_CALIBRATE}) real requests of the planned shapes to the backend, twice "
        "each, and estimate the run's wall time from the measured prefill and decode rates",
    )
    parser.add_argument("--format", default="table", choices=FORMATS, help="output format (default: table)")
    parser.add_argument("--per-latent", action="store_true", help="also list every latent's counts")
    explain_only = {f.name for f in dataclasses.fields(ExplainConfig)} - {f.name for f in dataclasses.fields(LLMConfig)}
    add_config_arguments(
        parser.add_argument_group("explain and score (as their commands take them)"), ExplainConfig, SHARED
    )
    add_config_arguments(parser.add_argument_group("score"), ScoreConfig, {*SHARED, *explain_only, *_llm_fields()})
    hints = typing.get_type_hints(ScoreConfig)
    docs = field_docs(ScoreConfig)
    for name in SHARED:
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=hints[name],
            default=None,
            help=f"{docs[name]} (default: each stage's own: explain {getattr(ExplainConfig, name)!r}, "
            f"score {getattr(ScoreConfig, name)!r})",
        )
    return parser


def _llm_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(LLMConfig)}


def configs(args: argparse.Namespace) -> tuple[ExplainConfig, ScoreConfig]:
    """The explain and score configurations the flags describe (validated as the stages validate them)."""
    out = []
    for cls in (ExplainConfig, ScoreConfig):
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if f.name not in SHARED}
        values.update({name: getattr(args, name) for name in SHARED if getattr(args, name) is not None})
        out.append(cls(**values))
    return out[0], out[1]


def add_price_arguments(parser: argparse.ArgumentParser) -> None:
    """--price-in, --price-out and --price-cached (dollars per million tokens); ``autointerp cost`` shares them."""
    for name, what in (("in", "uncached prompt"), ("out", "completion"), ("cached", "cached prompt")):
        parser.add_argument(
            f"--price-{name}",
            type=float,
            default=None,
            metavar="USD",
            help=f"dollars per million {what} tokens" + (" (default: --price-in)" if name == "cached" else ""),
        )


def check_price_values(args: argparse.Namespace) -> None:
    """Refuse a negative, infinite or NaN price."""
    for name in ("price_in", "price_out", "price_cached"):
        value = getattr(args, name)
        if value is not None and not (value >= 0 and value != float("inf")):
            raise AutointerpError(
                f"--{name.replace('_', '-')} is {value}.",
                "a price in dollars per million tokens, zero or more.",
                "pass e.g. --price-in 0.15 --price-out 0.60.",
            )


def check_prices(args: argparse.Namespace) -> None:
    check_price_values(args)
    if args.calibrate < 0:
        raise AutointerpError(f"--calibrate is {args.calibrate}.", "a positive number of requests (default 4).")
    if args.explanation_tokens is not None and args.explanation_tokens <= 0:
        raise AutointerpError(f"--explanation-tokens is {args.explanation_tokens}.", "a positive number of tokens.")


def run(args: argparse.Namespace) -> int:
    # imported here: the stages' modules load torch, which building the parser must not
    from .calibrate import calibrate
    from .plan import check_stages, make_plan
    from .render import dollars, render_table
    from .tokenizer import load_tokenizer

    stages = check_stages([s.strip() for s in args.stages.split(",") if s.strip()])
    check_prices(args)
    explain_config, score_config = configs(args)
    llm = explain_config if "explain" in stages else score_config
    tokenizer = load_tokenizer(llm.backend, llm.model, args.tokenizer)
    con = connect(args.db, read_only=True)
    try:
        plan = make_plan(
            con, args.db, stages, explain_config, score_config, tokenizer, explanation_tokens=args.explanation_tokens
        )
    finally:
        con.close()
    out = plan.to_dict(per_latent=args.per_latent)
    cost = dollars(plan, args.price_in, args.price_out, args.price_cached)
    if cost is not None:
        out["dollars"] = cost
    if args.calibrate:
        out["calibration"] = calibrate(llm, plan.counts, args.calibrate).to_dict()
        out["calibration"]["backend"] = llm.backend
    if args.format == "json":
        print(json.dumps(out, indent=2))
    else:
        print(render_table(out))
    return 0
