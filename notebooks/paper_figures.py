# Source of paper_figures.ipynb (percent format: one cell per "# %%" line). Edit this file, then run
# `.venv/bin/python notebooks/build_notebook.py` to rewrite the notebook; a test checks the two agree.

# %% [markdown]
# # Paper figures from an autointerp database
#
# Every figure and table below comes from **one SQL query** over the public views of an autointerp
# database (`latents` and `scores`, documented in `docs/schema.md`), opened read-only:
#
# - **(a)** the distribution of each scorer's headline `score`, with its chance level (`chance.score`);
# - **(b)** recall per activation quantile (0 = weakest), mean and 95% t-interval over latents, from
#   `scores.quantile_recall`;
# - **(c)** agreement between scorers: Spearman correlation of the latents' scores for each pair of
#   scorers, with the number of latents both scored;
# - **(d)** score against firing frequency (log scale);
# - **(e)** real scores against the shuffled-explanation control (`control = 'shuffled'`), paired per
#   latent on the same explainer and scorer configuration (the `control_gaps` view): the mean gap with a
#   bootstrap 95% interval, and the chance level. For the intervention scorers this gap is the headline
#   number: their judge can tell steered from clean text without reading the explanation;
# - **(f)** coverage against firing frequency: per decade, the share of live latents that are `ok`,
#   explained, and scored by each scorer (the `coverage` view);
# - **(g)** input score against output score per latent (Arad et al.'s scatter; log scale for the output
#   score), with their random-direction chance levels;
# - **(h)** given a comparison file of two SAEs (`autointerp compare`, `AUTOINTERP_MATCHES`): explanation
#   similarity against decoder cosine for the matched pairs of latents, with the SAEs' consistency
#   (PW-MCC and its baseline, matched shares) in the title; skipped with a note without one;
# - **(i)** explain strategies (`autointerp explain --candidates K --refine R`): test score by strategy
#   (single, best-of-k, refined) with intervals, and the validation-to-test drop of the chosen
#   explanations (how much selecting on the validate split overfits it); skipped with a note when the
#   database holds a single strategy;
# - a summary table per scorer, with the empty-explanation control (`control = 'empty'`, which should
#   sit at chance).
#
# Sample size: the means of (b) and (e) count each latent once (unweighted); the summary table gives
# both the unweighted mean score and the mean weighted by each score's sample size `n` (the contexts it
# was scored on, `n_examples`), in which latents scored on small test sets count less.
#
# Rows without a score (`score IS NULL`: unscored, or a metric undefined on that test set) are left out
# of every figure and counted in its titles. When one latent has several rows for the same scorer and
# control (rescored with another configuration), the latest is used; set `AUTOINTERP_SCORES_WHERE` to
# choose others. Figures are saved as PNG (and the tables as CSV) in `AUTOINTERP_FIGURES`.
#
# From the repository root (relative paths are read from the notebook's folder when it runs):
#
# ```bash
# AUTOINTERP_DB=$PWD/demo.duckdb AUTOINTERP_FIGURES=$PWD/figures .venv/bin/jupyter execute notebooks/paper_figures.ipynb
# ```
#
# Add `AUTOINTERP_MATCHES=$PWD/m.duckdb` (a file written by `autointerp compare --db A --db B --out m.duckdb`)
# for figure (h).

# %%
import os
from pathlib import Path

DB = Path(os.environ.get("AUTOINTERP_DB", "demo.duckdb")).resolve()
FIGURES = Path(os.environ.get("AUTOINTERP_FIGURES", "figures/")).resolve()
# A SQL condition on the `scores` view choosing the rows to plot, e.g. "model = 'gpt-4o-mini'".
SCORES_WHERE = os.environ.get("AUTOINTERP_SCORES_WHERE", "TRUE")
# A comparison file of two SAEs (`autointerp compare --out`) for figure (h); empty: (h) is skipped.
MATCHES = os.environ.get("AUTOINTERP_MATCHES", "")
N_BOOTSTRAP = 10_000
SEED = 0

# %%
import textwrap

import duckdb
import matplotlib

matplotlib.use("Agg")  # figures go to PNG files, which are then shown
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Image, display
from matplotlib.ticker import NullFormatter
from scipy import stats

from autointerp.errors import AutointerpError

if not DB.is_file():
    raise AutointerpError(
        f"No database at {DB}.",
        "an autointerp DuckDB file (collect, explain, score).",
        "set AUTOINTERP_DB to its path (relative paths start from the notebook's folder).",
    )
con = duckdb.connect(str(DB), read_only=True)
if not con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = 'scores'").fetchone()[0]:
    raise AutointerpError(
        f"{DB} has no `scores` view.",
        "a database written by autointerp 0.1 or later.",
        "run `autointerp score --db ...` on it (which also upgrades its schema).",
    )
if not con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = 'control_gaps'").fetchone()[0]:
    raise AutointerpError(
        f"{DB} has no `control_gaps` view: its schema is older than this autointerp.",
        "a database upgraded to this version's schema.",
        f"upgrade it once: `autointerp query --db {DB} --write CHECKPOINT`.",
    )
FIGURES.mkdir(parents=True, exist_ok=True)

# The column of `scores` that says how many contexts a score rests on (its sample size n).
SAMPLE_SIZE = "n_examples"

# The rows every query starts from: the latest row per (latent, scorer, control) among those chosen. The
# cue probes (`cue:<task>:<probe>`, input-blind baselines) are not scores of an explanation: the summary
# ends with their own table.
CHOSEN = f"""chosen AS (
    SELECT * FROM scores WHERE ({SCORES_WHERE}) AND scorer NOT LIKE 'cue:%'
    QUALIFY row_number() OVER (PARTITION BY latent, scorer, control
                               ORDER BY created_at DESC, config_hash, explanation_id) = 1)"""


def query(sql: str) -> pd.DataFrame:
    """Run ``sql`` with the ``chosen`` score rows as a CTE; ``sql`` may begin with more: ", x AS (...)"."""
    return con.execute(f"WITH {CHOSEN} {sql}").df()


KNOWN = [
    "detection",
    "fuzzing",
    "embedding",
    "simulation",
    "intervention",
    "intervention_choice",
    "intervention_surprisal",
    "output_choice",
    "input_score",
    "output_score",
]
SCORERS = sorted(
    query("SELECT DISTINCT scorer FROM chosen").scorer, key=lambda s: (KNOWN.index(s) if s in KNOWN else len(KNOWN), s)
)
COLORS = {s: plt.cm.tab10(i % 10) for i, s in enumerate(SCORERS)}
n_all = con.execute(f"SELECT count(*) FROM scores WHERE ({SCORES_WHERE}) AND scorer NOT LIKE 'cue:%'").fetchone()[0]
n_chosen = query("SELECT count(*) AS n FROM chosen").n[0]
print(
    f"{DB}: {n_chosen} score rows used ({n_all - n_chosen} older rows of the same latent, scorer and "
    f"control set aside); scorers: {', '.join(SCORERS) or 'none'}"
)


def panels(n: int, width: float = 4.2, height: float = 3.2):
    """A figure with one axes per scorer (at least one), in rows of three; unused axes hidden."""
    n = max(n, 1)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def note(ax, text: str) -> None:
    """Say in the panel (and in the notebook's output) why there is nothing to draw."""
    ax.text(0.5, 0.5, textwrap.fill(text, 36), ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])
    print(text)


def finish(fig, name: str) -> None:
    """Save the figure as FIGURES/<name>.png, show that file, and free the figure."""
    path = FIGURES / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    display(Image(filename=str(path)))


def mean_ci(values) -> tuple[float, float, float]:
    """Mean and 95% t-interval; the interval is NaN with fewer than two values."""
    values = np.asarray(values, dtype=float)
    mean = values.mean() if len(values) else np.nan
    if len(values) < 2:
        return mean, np.nan, np.nan
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return mean, mean - half, mean + half


def bootstrap_ci(values, n_resamples: int = N_BOOTSTRAP, seed: int = SEED) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the mean; NaN with fewer than two values."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return np.nan, np.nan
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_resamples, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def no_scores(ax) -> None:
    note(ax, f"no scores in {DB.name}: run `autointerp score` first")


# %% [markdown]
# ## (a) Score distribution per scorer
#
# The dashed line is the scorer's chance level (`chance.score`, averaged over latents when it varies).

# %%
real = query("""
    SELECT scorer, latent, score, CAST(chance->>'score' AS DOUBLE) AS chance
    FROM chosen WHERE control = ''""")

fig, axes = panels(len(SCORERS))
for ax, scorer in zip(axes, SCORERS or [None], strict=True):
    if scorer is None:
        no_scores(ax)
        continue
    rows = real[real.scorer == scorer]
    scored = rows[rows.score.notna()]
    n_null = len(rows) - len(scored)
    if scored.empty:
        note(ax, f"no data for {scorer}: {n_null} rows without a score")
        ax.set_title(scorer)
        continue
    ax.hist(scored.score, bins=min(20, max(5, len(scored) // 3)), color=COLORS[scorer], alpha=0.8)
    chance = scored.chance.mean()
    if not np.isnan(chance):
        ax.axvline(chance, color="k", ls="--", label=f"chance {chance:.2f}")
        ax.legend(fontsize=8)
    ax.set_title(f"{scorer}: {len(scored)} scored, {n_null} unscored", fontsize=10)
    ax.set_xlabel("score")
    ax.set_ylabel("latents")
finish(fig, "scores_histogram")

# %% [markdown]
# ## (b) Recall per activation quantile
#
# Each latent's recall of the activating test contexts of each quantile (0 = weakest), mean and 95%
# t-interval over latents, each latent counting once (unweighted).

# %%
recall = query("""
    SELECT s.scorer, s.latent, CAST(q.key AS INTEGER) AS quantile, TRY_CAST(q.value AS DOUBLE) AS recall
    FROM chosen s, json_each(s.quantile_recall) q
    WHERE s.control = '' AND s.score IS NOT NULL""")

fig, axes = panels(len(SCORERS))
for ax, scorer in zip(axes, SCORERS or [None], strict=True):
    if scorer is None:
        no_scores(ax)
        continue
    rows = recall[(recall.scorer == scorer) & recall.recall.notna()]
    if rows.empty:
        note(ax, f"no data for {scorer}: no per-quantile recall among its scored rows")
        ax.set_title(scorer)
        continue
    curve = pd.DataFrame(
        [(q, *mean_ci(g.recall), len(g)) for q, g in rows.groupby("quantile")],
        columns=["quantile", "mean", "low", "high", "n"],
    )
    ax.plot(curve["quantile"], curve["mean"], "o-", color=COLORS[scorer])
    ax.fill_between(curve["quantile"], curve["low"], curve["high"], color=COLORS[scorer], alpha=0.25)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xticks(curve["quantile"])
    ax.set_title(f"{scorer}: {rows.latent.nunique()} latents", fontsize=10)
    ax.set_xlabel("activation quantile (0 = weakest)")
    ax.set_ylabel("recall")
finish(fig, "quantile_recall")

# %% [markdown]
# ## (c) Agreement between scorers
#
# Spearman correlation of the latents' scores for each pair of scorers, over the latents both scored
# (`n`); "n/a" where fewer than three latents are shared or one scorer's scores are constant.

# %%
wide = query("SELECT latent, scorer, score FROM chosen WHERE control = '' AND score IS NOT NULL").pivot(
    index="latent", columns="scorer", values="score"
)
with_data = [s for s in SCORERS if s in wide.columns]
wide = wide.reindex(columns=with_data)
rho = wide.corr(method="spearman", min_periods=3)
present = wide.notna().to_numpy(dtype=int)
shared = pd.DataFrame(present.T @ present, index=with_data, columns=with_data)  # latents scored by both
agreement = pd.DataFrame(
    [(a, b, rho.loc[a, b], shared.loc[a, b]) for a in with_data for b in with_data],
    columns=["scorer_a", "scorer_b", "spearman", "n_latents"],
)
agreement.to_csv(FIGURES / "agreement.csv", index=False)

fig, ax = plt.subplots(figsize=(1.6 * max(len(with_data), 2) + 1.5, 1.4 * max(len(with_data), 2) + 1))
if len(with_data) < 2:
    missing = [s for s in SCORERS if s not in with_data]
    note(
        ax,
        "no data for agreement: it needs two scorers with scores (have: "
        + (", ".join(with_data) or "none")
        + (f"; no data for {', '.join(missing)}" if missing else "")
        + ")",
    )
else:
    image = ax.imshow(rho.to_numpy(dtype=float), vmin=-1, vmax=1, cmap="RdBu_r")
    for i, a in enumerate(with_data):
        for j, b in enumerate(with_data):
            value = rho.loc[a, b]
            label = "n/a" if np.isnan(value) else f"{value:.2f}"
            ax.text(j, i, f"{label}\nn={shared.loc[a, b]}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(with_data)), with_data, rotation=30, ha="right")
    ax.set_yticks(range(len(with_data)), with_data)
    fig.colorbar(image, ax=ax, label="Spearman ρ")
    ax.set_title("agreement between scorers")
    for s in SCORERS:
        if s not in with_data:
            print(f"no data for {s}: no scored rows to compare")
finish(fig, "scorer_agreement")

# %% [markdown]
# ## (d) Score against firing frequency

# %%
by_frequency = query("""
    SELECT s.scorer, s.latent, s.score, l.frequency
    FROM chosen s JOIN latents l USING (latent)
    WHERE s.control = ''""")

fig, axes = panels(len(SCORERS))
for ax, scorer in zip(axes, SCORERS or [None], strict=True):
    if scorer is None:
        no_scores(ax)
        continue
    rows = by_frequency[by_frequency.scorer == scorer]
    usable = rows[rows.score.notna() & (rows.frequency > 0)]
    n_null = int(rows.score.isna().sum())
    if usable.empty:
        note(ax, f"no data for {scorer}: {n_null} rows without a score")
        ax.set_title(scorer)
        continue
    ax.scatter(usable.frequency, usable.score, s=10, alpha=0.6, color=COLORS[scorer])
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    chance = real[(real.scorer == scorer) & real.score.notna()].chance.mean()
    if not np.isnan(chance):
        ax.axhline(chance, color="k", ls="--", lw=1, label=f"chance {chance:.2f}")
        ax.legend(fontsize=8)
    r = stats.spearmanr(usable.frequency, usable.score)[0] if len(usable) >= 3 else np.nan
    ax.set_title(
        f"{scorer}: {len(usable)} latents, {n_null} unscored" + ("" if np.isnan(r) else f", ρ={r:.2f}"), fontsize=10
    )
    ax.set_xlabel("firing frequency")
    ax.set_ylabel("score")
finish(fig, "score_vs_frequency")

# %% [markdown]
# ## (e) Real explanations against the shuffled-explanation control
#
# For each latent scored both with its own explanation and with another latent's (its frozen partner,
# under the same explainer and scorer configuration: `control_gaps`), the gap is real - shuffled. For
# `intervention`, `intervention_choice` and `intervention_surprisal` this gap, not the distance from
# chance, is the headline: the judge sees clean and steered continuations of the same prompt. Left:
# mean of each over those latents, with bootstrap 95% intervals, and the chance level (short black
# line). Right: the mean gap with its bootstrap 95% interval.
# Each latent counts once (unweighted); the summary table adds the gap weighted by n.

# %%
# each chosen real score with its shuffled control of the same explainer and scorer configuration
PAIRED = f"""
    , own AS (SELECT * FROM chosen WHERE control = '' AND score IS NOT NULL),
    pairs AS (
        SELECT own.scorer, own.latent, own.score AS own, own.{SAMPLE_SIZE} AS n, g.control, g.control_score,
               CAST(own.chance->>'score' AS DOUBLE) AS chance
        FROM own JOIN control_gaps g ON g.latent = own.latent AND g.scorer = own.scorer
         AND g.explanation_id = own.explanation_id AND g.scorer_config = own.config_hash)"""
paired = query(
    PAIRED
    + """
    SELECT own.scorer, own.latent, own.score AS own, p.control_score AS shuffled,
           CAST(own.chance->>'score' AS DOUBLE) AS chance
    FROM own LEFT JOIN (SELECT * FROM pairs WHERE control = 'shuffled') p USING (scorer, latent)"""
)

gaps = {}
fig, (left, right) = plt.subplots(1, 2, figsize=(max(8, 2.6 * len(SCORERS)), 3.8))
if not SCORERS:
    no_scores(left)
    no_scores(right)
for x, scorer in enumerate(SCORERS):
    rows = paired[paired.scorer == scorer]
    both = rows[rows.own.notna() & rows.shuffled.notna()]
    if both.empty:
        text = (
            f"no data for {scorer}: {int(rows.own.notna().sum())} real scores, none with a shuffled control "
            "of the same explainer and scorer configuration"
        )
        print(text)
        for ax in (left, right):
            ax.text(
                x,
                0.5,
                f"no data\nfor {scorer}",
                ha="center",
                va="center",
                fontsize=8,
                transform=ax.get_xaxis_transform(),
            )
        continue
    diff = (both.own - both.shuffled).to_numpy()
    gaps[scorer] = (diff.mean(), *bootstrap_ci(diff), len(diff))
    for offset, column in ((-0.12, "own"), (0.12, "shuffled")):
        mean = both[column].mean()
        low, high = bootstrap_ci(both[column])
        err = None if np.isnan(low) else [[mean - low], [high - mean]]
        left.errorbar(
            x + offset,
            mean,
            yerr=err,
            fmt="o",
            color=COLORS[scorer],
            mfc=COLORS[scorer] if column == "own" else "white",
            capsize=3,
        )
    chance = both.chance.mean()
    if not np.isnan(chance):
        left.hlines(chance, x - 0.3, x + 0.3, color="k", ls="--", lw=1)
    gap, low, high, n = gaps[scorer]
    err = None if np.isnan(low) else [[gap - low], [high - gap]]
    right.errorbar(x, gap, yerr=err, fmt="o", color=COLORS[scorer], capsize=4)
    right.annotate(f"n={n}", (x, gap), textcoords="offset points", xytext=(8, 0), fontsize=8)
for ax in (left, right):
    ax.set_xticks(range(len(SCORERS)), SCORERS, rotation=20)
    ax.set_xlim(-0.6, max(len(SCORERS), 1) - 0.4)
left.set_ylabel("mean score (● real, ○ shuffled, -- chance)")
left.set_title("real vs shuffled-explanation control", fontsize=10)
right.axhline(0, color="grey", lw=1)
right.set_ylabel("mean gap (real - shuffled)")
right.set_title("gap over the control, bootstrap 95% CI", fontsize=10)
finish(fig, "shuffled_control")

# %% [markdown]
# ## (f) Coverage against firing frequency
#
# Per decade of firing frequency (the `coverage` view: every latent of the database, whatever
# `AUTOINTERP_SCORES_WHERE` says), the share of the decade's live latents that are `ok` (enough contexts
# to be explained and scored), that have an explanation, and that each scorer scored with their own
# explanation; `n` above each decade is its number of live latents. Dead latents are counted in the
# title. The shares are also saved as `coverage.csv`.

# %%
has_coverage = con.execute(
    "SELECT count(*) FROM duckdb_views() WHERE schema_name = 'main' AND view_name = 'coverage'"
).fetchone()[0]
fig, ax = plt.subplots(figsize=(7.5, 4))
coverage = pd.DataFrame()
if not has_coverage:
    note(ax, f"no coverage view in {DB.name}: run any autointerp stage on it to bring its schema up to date")
else:
    counts = con.execute("""
        SELECT decade_order, decade, measure, coalesce(scorer, '') AS scorer, sum(latents) AS latents
        FROM coverage WHERE measure IN ('live', 'ok', 'explained', 'scored') GROUP BY ALL""").df()
    dead = "SELECT coalesce(sum(latents), 0) FROM coverage WHERE measure = 'latents' AND decade = 'dead'"
    n_dead = int(con.execute(dead).fetchone()[0])
    live = counts[counts.measure == "live"].set_index("decade_order").sort_index()
    coverage = live[["decade", "latents"]].rename(columns={"latents": "live"})
    for measure, scorer in [("ok", ""), ("explained", "")] + [
        ("scored", s) for s in sorted(counts[counts.measure == "scored"].scorer.unique())
    ]:
        rows = counts[(counts.measure == measure) & (counts.scorer == scorer)].set_index("decade_order")
        name = f"scored_{scorer}" if scorer else measure
        coverage[name] = rows.latents.reindex(coverage.index, fill_value=0) / coverage.live
    if coverage.empty:
        note(ax, f"no live latents in {DB.name}")
    else:
        x = np.arange(len(coverage))
        ax.plot(x, coverage.ok, "o-", color="k", label="ok")
        ax.plot(x, coverage.explained, "s--", color="grey", label="explained")
        for column in [c for c in coverage.columns if c.startswith("scored_")]:
            scorer = column.removeprefix("scored_")
            ax.plot(x, coverage[column], "^-", color=COLORS.get(scorer), label=f"scored: {scorer}")
        for xi, n in zip(x, coverage.live, strict=True):
            ax.annotate(f"n={n}", (xi, 1.03), ha="center", fontsize=7)
        ax.set_xticks(x, coverage.decade, rotation=20)
        ax.set_ylim(-0.03, 1.12)
        ax.set_xlabel("firing frequency (decade)")
        ax.set_ylabel("share of live latents")
        ax.legend(fontsize=7, loc="lower left")
        ax.set_title(f"coverage: {int(coverage.live.sum())} live latents, {n_dead} dead", fontsize=10)
coverage.to_csv(FIGURES / "coverage.csv", index=False)
finish(fig, "coverage")

# %% [markdown]
# ## (g) Input score against output score
#
# Arad et al.'s two scores of a latent, computed from its decoder direction and the subject model alone
# (no LLM): the **input score** is the share of its top contexts whose peak token is among the tokens its
# decoder direction promotes (logit lens); the **output score** is how likely those tokens become when the
# latent is amplified on a neutral prompt. One point per latent that has both (its latest rows), the output
# score on a log scale (it spans orders of magnitude; scores of 0 cannot be drawn and are counted in the
# title). Dashed and dotted lines: the median chance level of each score, a random direction of the same norm scored
# the same way. Arad et al. find that high values of both rarely co-occur: input latents sit to the right,
# output latents at the top. Saved as `input_output.csv`.

# %%
inout = query("""
    SELECT latent,
           max(score) FILTER (WHERE scorer = 'input_score') AS input_score,
           max(score) FILTER (WHERE scorer = 'output_score') AS output_score,
           max(CAST(chance->>'score' AS DOUBLE)) FILTER (WHERE scorer = 'input_score') AS input_chance,
           max(CAST(chance->>'score' AS DOUBLE)) FILTER (WHERE scorer = 'output_score') AS output_chance
    FROM chosen WHERE control = '' AND scorer IN ('input_score', 'output_score') AND score IS NOT NULL
    GROUP BY latent ORDER BY latent""")
inout.to_csv(FIGURES / "input_output.csv", index=False)

fig, ax = plt.subplots(figsize=(5.5, 4.2))
both = inout[inout.input_score.notna() & inout.output_score.notna()]
drawn = both[both.output_score > 0]
if drawn.empty:
    note(
        ax,
        f"no latent with both an input and an output score in {DB.name}: run `autointerp score --scorers "
        "input_score,output_score` first",
    )
else:
    ax.scatter(drawn.input_score, drawn.output_score, s=12, alpha=0.6, color="tab:purple")
    ax.set_yscale("log")
    for value, line, style, label in (
        (drawn.input_chance.median(), ax.axvline, "--", "input chance"),
        (drawn.output_chance[drawn.output_chance > 0].median(), ax.axhline, ":", "output chance"),
    ):
        if not np.isnan(value):
            line(value, color="k", ls=style, lw=1, label=f"{label} (random direction) {value:.2g}")
    rho = stats.spearmanr(drawn.input_score, drawn.output_score)[0] if len(drawn) >= 3 else np.nan
    ax.set_title(
        f"{len(drawn)} latents"
        + ("" if np.isnan(rho) else f", Spearman ρ={rho:.2f}")
        + (f"; {len(both) - len(drawn)} with output score 0 not drawn" if len(both) > len(drawn) else ""),
        fontsize=10,
    )
    ax.set_xlabel("input score")
    ax.set_ylabel("output score (log scale)")
    ax.legend(fontsize=7)
finish(fig, "input_vs_output")

# %% [markdown]
# ## (h) Two SAEs compared: explanation similarity against decoder cosine
#
# Each one-to-one matched pair of latents of the comparison file (`latent_matches`) is a point: the
# cosine of the two decoder directions against the cosine of the two latents' explanation embeddings.
# Pairs whose explanations agree as closely as their directions sit on the diagonal. The title gives
# the consistency of the two SAEs from `compare_summary`: PW-MCC beside its baseline (the same measure
# for a random pairing), and the share of latents matched above decoder cosine 0.5, 0.7 and 0.9. Pairs
# without an explanation similarity (a latent not explained) are counted, not drawn. Saved as
# `matched_pairs.csv`. Skipped with a note when `AUTOINTERP_MATCHES` is not set.

# %%
if not MATCHES:
    print("(h) skipped: no comparison file; set AUTOINTERP_MATCHES to a file of `autointerp compare`")
else:
    matches_path = Path(MATCHES).resolve()
    if not matches_path.is_file():
        raise AutointerpError(
            f"No comparison file at {matches_path}.",
            "a file written by `autointerp compare --db A --db B --out M.duckdb`.",
            "set AUTOINTERP_MATCHES to its path, or leave it empty to skip figure (h).",
        )
    cmp = duckdb.connect(str(matches_path), read_only=True)
    matched = cmp.execute(
        "SELECT latent_a, latent_b, decoder_cos, activation_corr, explanation_sim FROM latent_matches "
        "ORDER BY latent_a, latent_b"
    ).df()
    consistency = {
        m: (v, b) for m, v, b in cmp.execute("SELECT measure, value, baseline FROM compare_summary").fetchall()
    }
    cmp.close()
    matched.to_csv(FIGURES / "matched_pairs.csv", index=False)

    def measure(name: str, label: str) -> str:
        value, baseline = consistency.get(name, (None, None))
        if value is None:
            return ""
        return f"{label} {value:.2f}" + (f" (baseline {baseline:.2f})" if baseline is not None else "")

    fig, ax = plt.subplots(figsize=(5.5, 4.6))
    drawn = matched[matched.decoder_cos.notna() & matched.explanation_sim.notna()]
    if drawn.empty:
        note(ax, f"no matched pair with an explanation similarity in {matches_path.name}: explain both SAEs first")
    else:
        ax.scatter(drawn.decoder_cos, drawn.explanation_sim, s=12, alpha=0.6, color="tab:green", label="matched pair")
        ax.plot([0, 1], [0, 1], color="k", ls=":", lw=1, label="equal")
        rho = stats.spearmanr(drawn.decoder_cos, drawn.explanation_sim)[0] if len(drawn) >= 3 else np.nan
        ax.set_xlabel("decoder cosine")
        ax.set_ylabel("explanation similarity (embedding cosine)")
        shares = ", ".join(
            f"{t}: {consistency[f'matched_share_{t}'][0]:.0%}"
            for t in ("0.5", "0.7", "0.9")
            if consistency.get(f"matched_share_{t}", (None,))[0] is not None
        )
        lines = [
            f"{len(drawn)} matched pairs"
            + ("" if np.isnan(rho) else f", Spearman ρ={rho:.2f}")
            + (f"; {len(matched) - len(drawn)} without explanation similarity" if len(matched) > len(drawn) else ""),
            measure("pw_mcc", "PW-MCC"),
            f"matched share at decoder cos {shares}" if shares else "",
        ]
        ax.set_title("\n".join(line for line in lines if line), fontsize=9)
        ax.legend(fontsize=7)
    finish(fig, "matched_pairs")

# %% [markdown]
# ## (i) Explain strategies: test score, and how much selection overfits
#
# Left: the test score of each strategy's explanations (the `selection` that produced the scored
# explanation: `single`, `best_of_k`, `refined`) per scorer, each latent's latest score of that
# strategy: faint points are latents with their own interval (`ci_low`, `ci_high`), the bold mark the
# mean over latents with its 95% t-interval. Right: for the explanations chosen on the validate split
# (`explanation_candidates.chosen`), their validation score against their test score under the same
# measure (the run's `select_by`: detection or embedding); points below the diagonal scored worse on
# test than on the validation that chose them. The mean drop is given with a bootstrap 95% interval.
# Saved as `strategies.png`, `strategies.csv` and `validation_drop.csv`.

# %%
score_columns = set(con.execute("DESCRIBE scores").df().column_name)
has_candidates = bool(
    con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'explanation_candidates'").fetchone()[0]
)
by_strategy = pd.DataFrame(columns=["latent", "scorer", "selection", "score", "ci_low", "ci_high"])
if "selection" in score_columns:
    by_strategy = con.execute(f"""
        SELECT latent, scorer, selection, score, ci_low, ci_high FROM scores
        WHERE ({SCORES_WHERE}) AND control = '' AND scorer NOT LIKE 'cue:%' AND score IS NOT NULL
          AND selection IS NOT NULL
        QUALIFY row_number() OVER (PARTITION BY latent, scorer, selection ORDER BY created_at DESC) = 1""").df()
STRATEGIES = [s for s in ("single", "best_of_k", "refined") if s in set(by_strategy.selection)]
STRATEGIES += sorted(set(by_strategy.selection) - set(STRATEGIES))
if len(STRATEGIES) < 2:
    print(
        f"(i) skipped: {DB.name} holds scores of {'one explain strategy' if STRATEGIES else 'no explain strategy'} "
        f"({', '.join(STRATEGIES) or 'none'}); run `autointerp explain --candidates K` or `--refine R` and score "
        "again to compare strategies."
    )
else:
    drop = pd.DataFrame(columns=["latent", "scorer", "selection", "validation_score", "test_score"])
    if has_candidates:
        drop = con.execute(f"""
            SELECT c.latent, s.scorer, s.selection, c.validation_score, s.score AS test_score
            FROM explanation_candidates c
            JOIN runs r ON r.run_id = c.run_id
            JOIN scores s ON s.explanation_id = c.config_hash || '/' || c.latent AND s.control = ''
             AND s.scorer = coalesce(json_extract_string(r.config, '$.select_by'), 'detection')
            WHERE c.chosen AND c.validation_score IS NOT NULL AND s.score IS NOT NULL AND ({SCORES_WHERE})
            QUALIFY row_number() OVER (PARTITION BY c.latent, c.config_hash, s.scorer
                                       ORDER BY c.round DESC, s.created_at DESC) = 1""").df()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    table = []
    shown = [s for s in SCORERS if s in set(by_strategy.scorer)]
    width = 0.8 / max(len(shown), 1)
    rng = np.random.default_rng(SEED)
    for j, scorer in enumerate(shown):
        for i, strategy in enumerate(STRATEGIES):
            rows = by_strategy[(by_strategy.scorer == scorer) & (by_strategy.selection == strategy)]
            if rows.empty:
                continue
            x = i + (j - (len(shown) - 1) / 2) * width
            xs = x + rng.uniform(-width / 4, width / 4, len(rows))
            left.scatter(xs, rows.score, s=8, alpha=0.35, color=COLORS[scorer])
            has_ci = rows.ci_low.notna() & rows.ci_high.notna()
            left.vlines(
                xs[has_ci.to_numpy()], rows.ci_low[has_ci], rows.ci_high[has_ci], color=COLORS[scorer], alpha=0.2
            )
            mean, low, high = mean_ci(rows.score)
            left.errorbar(
                x,
                mean,
                yerr=[[mean - low if np.isfinite(low) else 0], [high - mean if np.isfinite(high) else 0]],
                fmt="o",
                color=COLORS[scorer],
                capsize=4,
                label=scorer if i == 0 else None,
            )
            table.append(dict(scorer=scorer, strategy=strategy, n_latents=len(rows), mean=mean, t_low=low, t_high=high))
    left.set_xticks(range(len(STRATEGIES)), STRATEGIES)
    left.set_ylabel("test score")
    left.set_title("test score by explain strategy")
    left.legend(fontsize=7)
    if drop.empty:
        note(right, "no chosen candidate has both a validation and a test score of the same measure")
    else:
        gaps = drop.validation_score - drop.test_score
        low, high = bootstrap_ci(gaps)
        for strategy, rows in drop.groupby("selection"):
            right.scatter(rows.validation_score, rows.test_score, s=12, label=f"{strategy} (n={len(rows)})")
        lo = float(min(drop.validation_score.min(), drop.test_score.min()))
        hi = float(max(drop.validation_score.max(), drop.test_score.max()))
        right.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        right.set_xlabel("validation score (chose the explanation)")
        right.set_ylabel("test score")
        right.set_title(f"validation - test: {gaps.mean():+.3f} [{low:+.3f}, {high:+.3f}]", fontsize=9)
        right.legend(fontsize=7)
    finish(fig, "strategies")
    strategies = pd.DataFrame(table)
    strategies.to_csv(FIGURES / "strategies.csv", index=False)
    drop.to_csv(FIGURES / "validation_drop.csv", index=False)
    display(strategies)

# %% [markdown]
# ## Summary per scorer
#
# `n_scored` / `n_unscored`: real-explanation rows with and without a score; `mean_score` and `chance`
# (mean `chance.score`) over the scored ones, each latent counting once; `weighted_mean_score`: their
# mean weighted by each score's sample size n (`n_examples`: the contexts it was scored on), and
# `median_n`; `control_mean`: mean score of the shuffled-control rows; `gap`: mean of real - shuffled
# over the `n_pairs` latents that have both (same explainer and scorer configuration), with the bootstrap
# interval of figure (e), and `weighted_gap`, weighted by the real score's n; `empty_mean`: mean of the
# empty-explanation control over the `n_empty` latents that have it (it should sit at `chance`);
# `headline`: the number to report, `gap` for the intervention scorers and `mean_score` otherwise.

# %%
summary = query(
    PAIRED.replace("AND score IS NOT NULL", "")
    + f""",
    ctrl AS (SELECT * FROM chosen WHERE control = 'shuffled')
    SELECT s.scorer,
           coalesce(r.n_scored, 0) AS n_scored, coalesce(r.n_unscored, 0) AS n_unscored,
           r.mean_score, r.weighted_mean_score, r.median_n, r.chance, c.control_mean,
           coalesce(g.n_pairs, 0) AS n_pairs, g.gap, g.weighted_gap,
           coalesce(e.n_empty, 0) AS n_empty, e.empty_mean
    FROM (SELECT DISTINCT scorer FROM chosen) s
    LEFT JOIN (SELECT scorer, count(score) AS n_scored, count(*) - count(score) AS n_unscored,
                      avg(score) AS mean_score,
                      sum(score * {SAMPLE_SIZE})
                          / nullif(sum({SAMPLE_SIZE}) FILTER (WHERE score IS NOT NULL), 0) AS weighted_mean_score,
                      median({SAMPLE_SIZE}) FILTER (WHERE score IS NOT NULL) AS median_n,
                      avg(CAST(chance->>'score' AS DOUBLE)) FILTER (WHERE score IS NOT NULL) AS chance
               FROM own GROUP BY scorer) r USING (scorer)
    LEFT JOIN (SELECT scorer, avg(score) AS control_mean FROM ctrl GROUP BY scorer) c USING (scorer)
    LEFT JOIN (SELECT scorer, count(*) AS n_pairs, avg(own - control_score) AS gap,
                      sum((own - control_score) * n) / nullif(sum(n), 0) AS weighted_gap
               FROM pairs WHERE control = 'shuffled' GROUP BY scorer) g USING (scorer)
    LEFT JOIN (SELECT scorer, count(*) AS n_empty, avg(control_score) AS empty_mean
               FROM pairs WHERE control = 'empty' GROUP BY scorer) e USING (scorer)"""
)
summary = summary.set_index("scorer").reindex(SCORERS)
summary["gap_low"] = [gaps.get(s, (np.nan,) * 4)[1] for s in summary.index]
summary["gap_high"] = [gaps.get(s, (np.nan,) * 4)[2] for s in summary.index]
summary["headline"] = ["gap" if s.startswith("intervention") else "mean_score" for s in summary.index]
summary.to_csv(FIGURES / "summary.csv")
print(f"figures and tables in {FIGURES}")
display(summary)

# %% [markdown]
# ## Cue probes
#
# Input-blind baselines (`autointerp/score/cues.py`): each reads one number off a detection or fuzzing
# test set (mark runs, peak position, excerpt length, special tokens, ...) and predicts the label without
# the explanation. Mean balanced accuracy over latents, chance 0.5; above 0.55 the test sets give the label
# away. Saved as `cues.csv`.

# %%
cues = con.execute(f"""
    SELECT scorer AS probe, avg(score) AS mean_balanced_accuracy, count(*) AS n_latents FROM (
        SELECT * FROM scores WHERE ({SCORES_WHERE}) AND scorer LIKE 'cue:%' AND score IS NOT NULL
        QUALIFY row_number() OVER (PARTITION BY latent, scorer ORDER BY created_at DESC) = 1)
    GROUP BY scorer ORDER BY scorer""").df()
cues.to_csv(FIGURES / "cues.csv", index=False)
display(cues)

# %%
con.close()
