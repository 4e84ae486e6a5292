"""The demo summary's output side: Arad et al.'s input and output scores of the demo latents against their
random-direction chance levels, how many latents are "output" or "input" latents, and the best steering
candidates with the tokens they promote.

These scores need no LLM (the subject model alone), so unlike the judged scores they mean something on the
embedded default. Read back from ``latent_summary`` and ``steering_candidates`` (the live definition when the
stored copy is stale), so a rerun that skipped every stage prints the same lines.

Output scores span orders of magnitude and their chance level differs per latent (a random direction of the
same norm, scored the same way), so they are compared on a log scale, paired by latent: the mean of
log10(score / chance) with two standard errors over latents. Input scores are compared on their own scale,
paired the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..store.summary import use_live_if_stale
from .report import cut, mean_and_half_width, table, verdict

#: An "output" latent: its output score at least this many times its random direction's. The score is one
#: deterministic number per latent (one prompt, one forward pass), so the spec warns against reading
#: differences below an order of magnitude.
OUTPUT_FACTOR = 10.0
#: Output scores at or below this are taken as this before the log (a probability that underflowed).
FLOOR = 1e-30
N_CANDIDATES = 5

ROWS = """
SELECT latent, input_score, input_score_ci_low, input_score_chance, output_score, output_score_chance
FROM latent_summary WHERE latent IN (SELECT unnest(?::INTEGER[])) ORDER BY latent
"""
CANDIDATES = """
SELECT latent, output_score, output_score_chance, input_score, promoted_tokens, lens_note, explanation
FROM steering_candidates WHERE latent IN (SELECT unnest(?::INTEGER[])) ORDER BY candidate_rank LIMIT ?
"""


@dataclass
class OutputSide:
    """What the summary says about the output side of the demo latents."""

    n_latents: int
    input_scores: list[tuple[float, float]] = field(default_factory=list)  # (score, chance) per latent
    output_scores: list[tuple[float, float]] = field(default_factory=list)
    n_output: int = 0  # output score >= OUTPUT_FACTOR x chance
    n_input: int = 0  # input score's 95% interval above its chance
    n_both: int = 0
    n_classified: int = 0  # latents with both scores
    candidates: list[tuple] = field(default_factory=list)  # rows of CANDIDATES


def log_ratio(score: float, chance: float) -> float:
    """log10(score / chance), both floored at ``FLOOR``."""
    return math.log10(max(score, FLOOR)) - math.log10(max(chance, FLOOR))


def gather_output_side(con, latents: list[int]) -> OutputSide:
    """The output side of ``latents`` from the database behind ``con`` (read-only is enough)."""
    use_live_if_stale(con)
    side = OutputSide(len(latents))
    for _, inp, inp_low, inp_chance, out, out_chance in con.execute(ROWS, [latents]).fetchall():
        if inp is not None and inp_chance is not None:
            side.input_scores.append((inp, inp_chance))
        if out is not None and out_chance is not None:
            side.output_scores.append((out, out_chance))
        if None in (inp, inp_chance, out, out_chance):
            continue
        side.n_classified += 1
        is_output = max(out, FLOOR) >= OUTPUT_FACTOR * max(out_chance, FLOOR)
        # without an interval (a row of an older writer) the score itself must clear its chance
        is_input = (inp_low if inp_low is not None else inp) > inp_chance
        side.n_output += is_output
        side.n_input += is_input
        side.n_both += is_output and is_input
    side.candidates = con.execute(CANDIDATES, [latents, N_CANDIDATES]).fetchall()
    return side


def _g(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def render_output_side(side: OutputSide) -> str:
    """The output side as text: the two scores against chance, the latent roles, the top candidates."""
    if not side.input_scores and not side.output_scores:
        return (
            "Output side: no input or output score for the demo latents (score them with "
            "--scorers input_score,output_score)."
        )
    out = ["Output side (Arad et al.; the subject model alone, no LLM, so meaningful on the embedded model):"]
    if side.input_scores:
        scores = [s for s, _ in side.input_scores]
        diffs = [s - c for s, c in side.input_scores]
        mean, _ = mean_and_half_width(scores)
        gap, half = mean_and_half_width(diffs)
        chance = sum(c for _, c in side.input_scores) / len(side.input_scores)
        out.append(
            f"  input score:  mean {_g(mean)} against {_g(chance)} for a random direction of the same norm, "
            f"n={len(scores)} latents; paired gap {_g(gap)}"
            + ("" if half is None else f" ±{half:.2g} (2 SE)")
            + f": {verdict(gap, half, 0.0, len(scores))}"
        )
    else:
        out.append("  input score:  no scored row for the demo latents (scores.reason says why, e.g. too few examples)")
    if side.output_scores:
        ratios = [log_ratio(s, c) for s, c in side.output_scores]
        mean, half = mean_and_half_width(ratios)
        geo = 10 ** (sum(math.log10(max(s, FLOOR)) for s, _ in side.output_scores) / len(ratios))
        geo_chance = 10 ** (sum(math.log10(max(c, FLOOR)) for _, c in side.output_scores) / len(ratios))
        out.append(
            f"  output score: geometric mean {_g(geo)} against {_g(geo_chance)} for random directions, "
            f"n={len(ratios)} latents; log10(score / chance) {mean:+.2f}"
            + ("" if half is None else f" ±{half:.2f} (2 SE)")
            + f": {verdict(mean, half, 0.0, len(ratios))}"
        )
    else:
        out.append("  output score: no scored row for the demo latents (scores.reason says why)")
    if side.n_classified:
        neither = side.n_classified - side.n_output - side.n_input + side.n_both
        out.append(
            f"  of {side.n_classified} latents with both scores: {side.n_output} output latents (output score "
            f">= {OUTPUT_FACTOR:g}x its random direction's), {side.n_input} input latents (input score's 95% "
            f"interval above its chance), {side.n_both} both, {neither} neither. Arad et al. find high values of "
            "both rare."
        )
    if side.candidates:
        rows = [
            [
                str(latent),
                _g(output),
                _g(chance),
                _g(inp),
                cut(" ".join(repr(t) for t in tokens) if tokens else (note or "-"), 40),
                cut(text, 50),
            ]
            for latent, output, chance, inp, tokens, note, text in side.candidates
        ]
        out += [
            "",
            "Top steering candidates by output score (steering_candidates; check one by eye with autointerp steer):",
            table(
                ["latent", "output score", "random dir.", "input score", "promoted tokens", "explanation"],
                rows,
                {0, 1, 2, 3},
            ),
        ]
    return "\n".join(out)
