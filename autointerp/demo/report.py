"""The demo's summary: per scorer, how many latents were scored and how their mean compares with chance,
with the shuffled-explanation control and with the empty-explanation control; the headline of the
intervention scorers (their paired gap over the shuffled control); then the best latents by detection
score.

Read back from the public views (not from the stages' return values), so a rerun that skipped every
stage prints the same table. Which rows count follows ``latent_summary``'s rules: each latent's latest
explanation and the latest score row of that explanation per scorer; its controls come from
``control_gaps`` (same explainer and scorer configuration as the real score). A mean is called "at
chance" when chance lies within two standard errors of it (over latents): with a handful of latents
that is a wide band, and the table says so rather than reading meaning into noise.

Sample size: the mean and its band count each latent once; beside them the table gives the mean weighted
by each score's sample size ``n`` (``SAMPLE_SIZE``: the contexts it was scored on), in which latents
scored on small test sets count less, and the range of ``n`` over latents.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from ..plan.costs import cost_rows, strategy_lines
from ..score.paired_gap import PairedGap, paired_gap

#: The column of ``scores`` that says how many contexts a score rests on.
SAMPLE_SIZE = "n_examples"
MIN_LATENTS = 3  # fewer scored latents give no verdict: two equal scores would give a zero-width band

FRAME = """
WITH chosen AS (SELECT unnest(?::INTEGER[]) AS latent),
explained AS (
    SELECT latent, config_hash || '/' || latent AS explanation_id, explanation
    FROM explanations WHERE status = 'explained' AND latent IN (SELECT latent FROM chosen)
    QUALIFY row_number() OVER (PARTITION BY latent ORDER BY created_at DESC) = 1)
"""
REAL = (
    FRAME
    + f"""
SELECT s.latent, s.scorer, s.status, s.score, s.chance, s.ci_low, s.ci_high, s.{SAMPLE_SIZE}
FROM scores s JOIN explained e USING (explanation_id)
WHERE s.control = '' AND s.scorer NOT LIKE 'cue:%'
QUALIFY row_number() OVER (PARTITION BY s.latent, s.scorer ORDER BY s.created_at DESC) = 1
"""
)
# the input-blind cue probes (score/cues.py) of the latest explanation: mean balanced accuracy per probe
CUES = (
    FRAME
    + """
SELECT scorer, avg(score), count(*) FROM (
    SELECT s.latent, s.scorer, s.score FROM scores s JOIN explained e USING (explanation_id)
    WHERE s.scorer LIKE 'cue:%' AND s.status = 'scored' AND s.score IS NOT NULL
    QUALIFY row_number() OVER (PARTITION BY s.latent, s.scorer ORDER BY s.created_at DESC) = 1)
GROUP BY scorer ORDER BY scorer
"""
)
#: A cue probe's mean balanced accuracy above this says the test sets give the label away (issue 15).
CUE_TARGET = 0.55
# each real score's controls, paired on its explainer and scorer configuration; per (latent, scorer,
# control) the pair of the latest real score
CONTROL = (
    FRAME
    + """
SELECT g.latent, g.scorer, g.control, g.score, g.control_score
FROM control_gaps g JOIN explained e USING (explanation_id)
QUALIFY row_number() OVER (
    PARTITION BY g.latent, g.scorer, g.control ORDER BY g.scored_at DESC, g.control_scored_at DESC) = 1
"""
)
#: Scorers whose judge can tell steered from clean text without the explanation: their headline is the
#: paired gap over the shuffled control, not the distance from chance.
GAP_HEADLINE = ("intervention", "intervention_choice", "intervention_surprisal")
EXPLAIN_STATUS = """
SELECT latent, status FROM explanations WHERE latent IN (SELECT unnest(?::INTEGER[]))
QUALIFY row_number() OVER (PARTITION BY latent ORDER BY status = 'explained' DESC, created_at DESC) = 1
"""


@dataclass
class ScorerLine:
    """One scorer's row of the summary table."""

    scorer: str
    scored: int
    unscored: int  # a score row without a readable answer
    not_run: int  # chosen latents with no score row (no explanation, or the run stopped)
    mean: float | None
    chance: float | None
    half_width: float | None  # two standard errors of the mean over latents
    verdict: str
    control_mean: float | None = None  # mean of the shuffled-control scores paired with a real one
    n_control: int = 0
    gap: PairedGap = PairedGap(None, None, None, 0)  # score - shuffled control, paired by latent; 95% CI
    empty_mean: float | None = None  # mean of the empty-explanation control scores (should be at chance)
    n_empty: int = 0
    weighted_mean: float | None = None  # weighted by each latent's sample size n
    n_range: tuple[int, int] | None = None  # fewest and most contexts a scored latent's score rests on


@dataclass
class Summary:
    latents: list[int]
    explain_status: dict[str, int]  # explained / unparsed / failed / not explained
    lines: list[ScorerLine]
    top: list[dict] = field(default_factory=list)  # best latents: latent, frequency, scores, intervals, explanation
    top_by: str = ""
    cues: list[tuple[str, float, int]] = field(default_factory=list)  # (probe, mean balanced accuracy, latents)
    costs: list[str] = field(default_factory=list)  # per explain strategy: calls and tokens per latent (llm_costs)


def mean_and_half_width(values: list[float]) -> tuple[float | None, float | None]:
    """The mean and two standard errors of it (sample standard deviation); None where undefined."""
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, 2 * math.sqrt(var / len(values))


def weighted_mean(values: list[float], weights: list[float]) -> float | None:
    """The mean of ``values`` weighted by ``weights``; None without a positive weight."""
    total = sum(weights)
    return sum(v * w for v, w in zip(values, weights, strict=True)) / total if total > 0 else None


def verdict(mean: float | None, half_width: float | None, chance: float | None, n: int) -> str:
    """above / below / at chance, by whether chance lies outside mean +- two standard errors over ``n``
    latents; no verdict below ``MIN_LATENTS``, where the spread itself is too poorly known."""
    if mean is None:
        return "not scored"
    if chance is None:
        return "no chance level"
    if half_width is None or n < MIN_LATENTS:
        return f"{n} latent{'s' if n != 1 else ''}: too few to tell"
    if mean - half_width > chance:
        return "above chance"
    if mean + half_width < chance:
        return "below chance"
    return "at chance"


def _chance_of(text) -> float | None:
    try:
        value = json.loads(text).get("score") if text else None
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, (int, float)) else None


def scorer_line(
    scorer: str, n_latents: int, rows: list[tuple], control_rows: list[tuple], sizes: dict[int, int] | None = None
) -> ScorerLine:
    """Aggregate one scorer's (latent, status, score, chance) rows and its ``control_gaps`` rows (latent,
    control, score, control score) into a table line.

    The gap over the shuffled control is paired by latent (both scores are on the latent's own test
    set, under the same configurations), so its spread is that of the differences; its 95% interval is
    a seeded bootstrap over latents (``score.paired_gap``)."""
    scored = {r[0]: r for r in rows if r[1] == "scored" and r[2] is not None}
    mean, half = mean_and_half_width([r[2] for r in scored.values()])
    chances = [c for c in (_chance_of(r[3]) for r in scored.values()) if c is not None]
    chance = sum(chances) / len(chances) if chances else None
    shuffled = [r for r in control_rows if r[1] == "shuffled" and r[0] in scored]
    empty = [r[3] for r in control_rows if r[1] == "empty" and r[0] in scored]
    n = [sizes[lat] for lat in scored if sizes and sizes.get(lat) is not None]
    weighted = weighted_mean([scored[lat][2] for lat in scored], n) if len(n) == len(scored) else None
    return ScorerLine(
        scorer,
        len(scored),
        len(rows) - len(scored),
        n_latents - len(rows),
        mean,
        chance,
        half,
        verdict(mean, half, chance, len(scored)),
        mean_and_half_width([r[3] for r in shuffled])[0],
        len(shuffled),
        paired_gap([r[2] for r in shuffled], [r[3] for r in shuffled]),
        mean_and_half_width(empty)[0],
        len(empty),
        weighted_mean=weighted,
        n_range=(min(n), max(n)) if n else None,
    )


def gather(con, latents: list[int], scorer_order: list[str]) -> Summary:
    """The summary of ``latents`` from the database behind ``con`` (read-only is enough)."""
    full = con.execute(REAL, [latents]).fetchall()  # latent, scorer, status, score, chance, ci_low, ci_high, n
    sizes = {(r[0], r[1]): r[7] for r in full}
    real = [r[:5] for r in full]
    control = con.execute(CONTROL, [latents]).fetchall()
    statuses = dict(con.execute(EXPLAIN_STATUS, [latents]).fetchall())
    explain_status = {"explained": 0, "unparsed": 0, "failed": 0, "not explained": 0}
    for latent in latents:
        explain_status[statuses.get(latent, "not explained")] += 1
    present = {r[1] for r in real} | {r[1] for r in control}
    scorers = list(scorer_order) + sorted(present - set(scorer_order))
    lines = [
        scorer_line(
            s,
            len(latents),
            [r[:1] + r[2:] for r in real if r[1] == s],
            [r[:1] + r[2:] for r in control if r[1] == s],
            {lat: n for (lat, scorer), n in sizes.items() if scorer == s},
        )
        for s in scorers
    ]
    summary = Summary(latents, explain_status, lines)
    summary.cues = [(name, float(mean), int(n)) for name, mean, n in con.execute(CUES, [latents]).fetchall()]
    summary.costs = strategy_lines(cost_rows(con))
    scores: dict[int, dict[str, float]] = {}
    intervals: dict[int, dict[str, tuple]] = {}  # (ci_low, ci_high, n) of each score
    for latent, scorer, status, value, _, low, high, n in full:
        if status == "scored" and value is not None:
            scores.setdefault(latent, {})[scorer] = value
            intervals.setdefault(latent, {})[scorer] = (low, high, n)
    by = next((s for s in ["detection"] + scorers if any(s in v for v in scores.values())), "")
    if by:
        texts = dict(con.execute(FRAME + "SELECT latent, explanation FROM explained", [latents]).fetchall())
        freq = dict(
            con.execute(
                "SELECT latent, frequency FROM latents WHERE latent IN (SELECT unnest(?::INTEGER[]))", [latents]
            ).fetchall()
        )
        ranked = sorted((lat for lat in scores if by in scores[lat]), key=lambda lat: (-scores[lat][by], lat))
        summary.top = [
            {
                "latent": lat,
                "frequency": freq.get(lat),
                "scores": scores[lat],
                "intervals": intervals[lat],
                "explanation": texts.get(lat),
            }
            for lat in ranked[:5]
        ]
        summary.top_by = by
    return summary


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def with_interval(value: float | None, interval: tuple | None) -> str:
    """A score as "0.740 [0.65, 0.82], n=100" (its 95% interval and sample size), or the number alone
    where the score row has no interval."""
    low, high, n = interval or (None, None, None)
    if value is None or low is None or high is None:
        return _number(value)
    return f"{value:.3f} [{low:.2f}, {high:.2f}], n={n}"


def table(header: list[str], rows: list[list[str]], right: set[int]) -> str:
    """An aligned text table, numbers (the columns in ``right``) right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def line(cells):
        padded = (c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "  ".join(padded).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def cut(text: str | None, width: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def headline(lines: list[ScorerLine]) -> list[str]:
    """The intervention scorers' headline: the paired gap over the shuffled control, with its interval.
    Their judge sees clean and steered continuations of the same prompt and can pick the less fluent
    one without reading the explanation (surprisal likewise), so distance from chance says little."""
    shown = [ln for ln in lines if ln.scorer in GAP_HEADLINE and ln.scored]
    if not shown:
        return []
    out = ["", "Intervention headline: the gap over the shuffled control, paired by latent (95% bootstrap interval):"]
    for ln in shown:
        if ln.gap.n:
            out.append(f"  {ln.scorer}: {ln.gap.text()} latents")
        else:
            out.append(f"  {ln.scorer}: no shuffled control yet (run it with --control shuffled)")
    return out


def cue_lines(cues: list[tuple[str, float, int]]) -> list[str]:
    """One line on the cue probes: input-blind rules that read the label off a test set without its
    explanation. Their mean balanced accuracy should sit near 0.5; above ``CUE_TARGET`` the test sets leak."""
    if not cues:
        return []
    name, mean, n = max(cues, key=lambda c: c[1])
    leaks = [c for c in cues if c[1] > CUE_TARGET]
    verdict = (
        f"none above {CUE_TARGET:.2f}"
        if not leaks
        else f"above {CUE_TARGET:.2f}: " + ", ".join(f"{c[0]} {c[1]:.3f}" for c in leaks)
    )
    return [
        "",
        f"Cue probes (input-blind baselines, chance 0.5): {len(cues)} probes over up to {n} latents; highest mean "
        f"{mean:.3f} ({name}); {verdict}.",
    ]


def render(summary: Summary, scorers_shown: list[str]) -> str:
    """The summary as text: the scorer table, then the top latents."""
    n = len(summary.latents)
    es = summary.explain_status
    out = [
        (
            f"Explanations for the {n} demo latents: {es['explained']} explained, {es['unparsed']} unparsed (no "
            f"explanation could be read from the answer), {es['failed']} failed, {es['not explained']} not explained."
        )
    ]
    rows = []
    for ln in summary.lines:
        rows.append(
            [
                ln.scorer,
                str(ln.scored),
                str(ln.unscored),
                str(ln.not_run),
                _number(ln.mean),
                "-" if ln.half_width is None else f"±{ln.half_width:.3f}",
                _number(ln.weighted_mean),
                "-" if ln.n_range is None else "{}-{}".format(*ln.n_range),
                _number(ln.chance, 2),
                ln.verdict,
                _number(ln.control_mean) + (f" (n={ln.n_control})" if ln.n_control else ""),
                ln.gap.text().removesuffix(f", n={ln.gap.n}"),
                _number(ln.empty_mean) + (f" (n={ln.n_empty})" if ln.n_empty else ""),
            ]
        )
    out += [
        "",
        table(
            [
                "scorer",
                "scored",
                "unscored",
                "not run",
                "mean",
                "±2 SE",
                "n-weighted",
                "n/latent",
                "chance",
                "verdict",
                "shuffled control",
                "gap [95% CI]",
                "empty control",
            ],
            rows,
            {1, 2, 3, 4, 5, 6, 7, 8, 11},
        ),
    ]
    out += headline(summary.lines)
    out += cue_lines(summary.cues)
    if summary.costs:
        out += ["", *summary.costs, "(`autointerp cost --db FILE` for every run and purpose, and dollars with prices.)"]
    if summary.top:
        out += ["", f"Top latents by {summary.top_by} score:"]
        rows = [
            [str(t["latent"]), "-" if t["frequency"] is None else f"{t['frequency']:.2e}"]
            + [with_interval(t["scores"].get(s), t.get("intervals", {}).get(s)) for s in scorers_shown]
            + [cut(t["explanation"], 70)]
            for t in summary.top
        ]
        out.append(
            table(["latent", "frequency"] + scorers_shown + ["explanation"], rows, set(range(len(scorers_shown) + 2)))
        )
    return "\n".join(out)
