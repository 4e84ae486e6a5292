"""``autointerp steer``: continue one prompt clean and with one latent steered, to check a latent by eye.

The collect's own model and dictionary are loaded (``collect.reopen``); the latent's decoder direction is
added at every position of the module it writes to (``models.steering``), at a strength calibrated so
that KL(clean || steered) of the next token at the end of the prompt is ``--target-kl`` (a negative one
steers against the direction), or at ``--strength``. Both continuations draw the same random numbers, so
the steering is their only difference. The database is opened read-only: nothing is stored.
"""

from __future__ import annotations

import argparse
import math

from ..errors import AutointerpError
from ..store.db import connect

DEFAULT_TARGET_KL = 0.5
#: Relative tolerance of the calibration (delphi's rtol, as the intervention scorers).
TOLERANCE = 0.1


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "steer",
        help="steer: continue a prompt clean and with one latent steered, at a calibrated strength",
        description="Load the collect's model and dictionary, calibrate the strength of one latent's decoder "
        "direction so that KL(clean || steered) of the next token after the prompt is --target-kl (or use "
        "--strength), and print the strength, the KL reached and the clean and steered continuations (the "
        "same random numbers). Reads the database only.",
        epilog='example: autointerp steer --db demo.duckdb --latent 123 --prompt "I think" --target-kl 1',
    )
    parser.add_argument("--db", required=True, help="DuckDB file written by `autointerp collect`")
    parser.add_argument("--latent", required=True, help="the latent to steer (its index in the dictionary)")
    parser.add_argument("--prompt", required=True, help="the text to continue")
    how = parser.add_mutually_exclusive_group()
    how.add_argument(
        "--target-kl",
        help=f"KL(clean || steered) in nats to calibrate the strength to; negative: steer against the latent's "
        f"direction (default: {DEFAULT_TARGET_KL})",
    )
    how.add_argument("--strength", help="steer at this multiple of the decoder direction instead of calibrating")
    parser.add_argument("--tokens", default="30", help="tokens to generate per continuation (default: 30)")
    parser.add_argument("--seed", default="0", help="seed of the sampling shared by both continuations (default: 0)")
    parser.add_argument(
        "--temperature", default="0.75", help="sampling temperature, 0 for greedy (default: 0.75, Gur-Arieh et al.'s)"
    )
    return parser


def number(flag: str, text: str, expected: str) -> float:
    """A flag's value as a finite number, or a clear error."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise AutointerpError(f"{flag} {text!r} is not a finite number.", expected)
    return value


def whole(flag: str, text: str, expected: str, low: int) -> int:
    """A flag's value as a whole number >= ``low``, or a clear error."""
    try:
        value = int(text)
    except ValueError:
        raise AutointerpError(f"{flag} {text!r} is not a whole number.", expected) from None
    if value < low:
        raise AutointerpError(f"{flag} is {value}.", expected)
    return value


def check_latent(con, run_id: str, latent: int) -> None:
    """Refuse a latent the dictionary does not have, a planted one (no decoder weights) or a dead one."""
    from .intervention.store import planted_latents

    n_latents = con.execute("SELECT n_latents FROM collections WHERE run_id = ?", [run_id]).fetchone()[0]
    if not 0 <= latent < n_latents:
        raise AutointerpError(
            f"--latent {latent} is out of range: the dictionary has {n_latents} latents.",
            f"0 <= latent < {n_latents}.",
        )
    if latent in planted_latents(con, run_id):
        raise AutointerpError(
            f"Latent {latent} cannot be steered: it is a planted latent, a rule over token ids (planted_latents) "
            "with no decoder weights.",
            "a latent of the dictionary itself (it has decoder weights).",
            "pick another --latent: SELECT latent FROM latents WHERE n_firing > 0",
        )
    fired = con.execute(
        "SELECT n_firing FROM latent_stats WHERE run_id = ? AND latent = ?", [run_id, latent]
    ).fetchone()
    if fired is None or not fired[0]:
        raise AutointerpError(
            f"Latent {latent} is dead: it never fired in the collect, so steering it shows nothing it does.",
            "a live latent (n_firing > 0 in the latents view).",
            "pick another --latent: SELECT latent FROM latents WHERE n_firing > 0 ORDER BY frequency DESC",
        )


def run(args: argparse.Namespace) -> int:
    latent = whole("--latent", args.latent, "a latent index, 0 or more.", 0)
    tokens = whole("--tokens", args.tokens, "a positive whole number of tokens.", 1)
    seed = whole("--seed", args.seed, "a whole number, 0 or more.", 0)
    temperature = number("--temperature", args.temperature, "0 (greedy) or a positive temperature.")
    if temperature < 0:
        raise AutointerpError(f"--temperature is {temperature:g}.", "0 (greedy) or a positive temperature.")
    strength = None if args.strength is None else number("--strength", args.strength, "a multiple such as 8 or -20.")
    target = DEFAULT_TARGET_KL
    if args.target_kl is not None:
        target = number("--target-kl", args.target_kl, "a non-zero KL in nats, such as 0.5 or -1.")
        if target == 0:
            raise AutointerpError("--target-kl is 0.", "a non-zero KL in nats, such as 0.5 or -1.")
    if not args.prompt.strip():
        raise AutointerpError("--prompt is empty.", "a text to continue, such as 'I think'.")
    from ..collect.reopen import read_collect_source  # imports torch: not when the CLI starts

    con = connect(args.db, read_only=True)
    try:
        source = read_collect_source(con)
        check_latent(con, source.run_id, latent)
    finally:
        con.close()
    print(steer_report(source, latent, args.prompt, target, strength, tokens, seed, temperature))
    return 0


def steer_report(source, latent, prompt, target, strength, tokens, seed, temperature) -> str:
    """Load the model, steer, and say what happened (torch is imported only here)."""
    from ..models.steering import steering_target
    from .intervention import generation, kl

    subject, dictionary = source.load()
    hookpoint, direction = steering_target(dictionary, latent, subject)
    if strength is None:
        found = kl.scale_for_target_kl(
            subject, subject.tokenizer, hookpoint, direction, [prompt], abs(target), TOLERANCE * abs(target),
            sign=1 if target > 0 else -1,
        )  # fmt: skip
        strength, achieved = found.scale, found.kl
        how = f"calibrated to target KL {target:+g} ± {TOLERANCE * abs(target):g} nats"
    else:
        achieved = kl.kl_for_scale(subject, subject.tokenizer, hookpoint, direction, [prompt], strength)
        how = "given"
    clean, steered = generation.generate_clean_and_steered(
        subject, subject.tokenizer, [prompt], direction, strength, hookpoint, tokens, seed, temperature
    )
    return "\n".join(
        [
            f"latent {latent} of {dictionary.describe()}, steered at {hookpoint}",
            f"strength: {strength:.6g} ({how})",
            f"achieved KL: {achieved:.4g} nats (next token after the prompt)",
            f"prompt:  {prompt}",
            f"clean:   {prompt}{clean[0]}",
            f"steered: {prompt}{steered[0]}",
        ]
    )
