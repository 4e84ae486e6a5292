"""Planted-feature benchmark: do the scorers rank a correct explanation above wrong ones, on latents whose
answer is known?

Planted latents (``--sae planted:FILE``, docs/planted.md) are rules over token ids in four families (word
lists, a token gated by its context, a structural rule, a semantic class), each at fidelities
{1, 0.8, 0.5, 0.2} and two densities. For every latent five explanations are scored on the same test set:

- ``own``: the explainer's own explanation (whatever backend the bench is given);
- ``truth``: the planted description, imported under its own configuration (the ceiling);
- ``near``: a near miss written for the concept (too broad, too narrow, or the wrong context);
- ``other``: the description of a latent of another concept (another family where there is one);
- ``empty``: ``--control empty``.

Reported (JSON on the last line):

- **scorer validity**, per scorer: the mean over latents of Kendall's tau between the intended order
  truth > near > other and the scores (1: the order holds, -1: reversed), with a bootstrap 95% interval
  over latents; the share of latents where the full order holds strictly; the mean score per fidelity for
  truth and for own; the empty control's mean next to the scorer's chance level;
- **recovery**: for the explainer's own explanations, the rank of the true description among all planted
  descriptions by sentence-embedding similarity (1 is best), its mean and the share at rank 1, with the
  chance rank ((n + 1) / 2);
- **coverage** per density: planted latents that are ``ok`` and their activating contexts;
- **cue probes**: the mean balanced accuracy of every ``cue:`` row (input-blind baselines; 0.5 is chance).

The LLM-judged scorers (detection, fuzzing, simulation) only mean something with a capable model: on the
embedded 135M model they sit at chance whatever the explanation. The bench runs unchanged with
``--backend openai --model M --base-url URL``; by default it runs the embedding scorer (which needs no LLM)
and marks LLM-judged rows with ``needs_capable_model`` when the backend is the embedded one.

    python bench/planted.py [--tokens 200000] [--scorers embedding] [--per-family 4] [--full]
                            [--backend openai --model M --base-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402
import numpy as np  # noqa: E402

FIDELITIES = (1.0, 0.8, 0.5, 0.2)
DENSITIES = (3e-4, 3e-3)
LLM_JUDGED = {"detection", "fuzzing", "simulation", "detection_hard"}
ORDER = {"truth": 3, "near": 2, "other": 1}

# Per family: (rule, ground-truth description, near miss and what kind of miss it is).
CONCEPTS = {
    "word_list": [
        (
            {
                "family": "word_list",
                "words": [
                    "January",
                    "February",
                    "March",
                    "April",
                    "May",
                    "June",
                    "July",
                    "August",
                    "September",
                    "October",
                    "November",
                    "December",
                ],
            },
            "names of the months of the year",
            "dates and times in general",  # too broad
        ),
        (
            {"family": "word_list", "words": ["red", "blue", "green", "yellow", "black", "white", "orange"]},
            "colour words (red, blue, green, yellow, black, white, orange)",
            "the colour red",  # too narrow
        ),
        (
            {"family": "word_list", "words": ["France", "Germany", "England", "China", "Japan", "India", "Italy"]},
            "names of countries (France, Germany, England, China, Japan, India, Italy)",
            "names of cities",  # wrong concept nearby
        ),
        (
            {"family": "word_list", "words": ["mother", "father", "son", "daughter", "brother", "sister", "wife"]},
            "family members (mother, father, son, daughter, brother, sister, wife)",
            "people in general",  # too broad
        ),
    ],
    "gated": [
        (
            {"family": "gated", "words": ["States"], "context_words": ["United"], "within": 2},
            "the word 'States' right after 'United' (as in United States)",
            "the word 'States' anywhere",  # wrong context: ignores the gate
        ),
        (
            {"family": "gated", "words": ["War"], "context_words": ["World", "Civil"], "within": 3},
            "the word 'War' after 'World' or 'Civil' (World War, Civil War)",
            "the word 'World' before 'War'",  # wrong token of the phrase
        ),
        (
            {"family": "gated", "words": ["York"], "context_words": ["New"], "within": 2},
            "the word 'York' in 'New York'",
            "place names starting with 'New'",  # wrong token, too broad
        ),
        (
            {"family": "gated", "words": ["century"], "context_words": ["th", "st", "nd", "rd"], "within": 3},
            "the word 'century' after an ordinal (the 19th century)",
            "ordinal numbers such as 19th",  # the gate, not the token
        ),
    ],
    "structural": [
        (
            {"family": "structural", "kind": "after_newline"},
            "the first token after a line break",
            "the last token before a line break",  # wrong position
        ),
        (
            {"family": "structural", "kind": "digits"},
            "numbers written in digits",
            "years between 1900 and 1999",  # too narrow
        ),
        (
            {"family": "structural", "kind": "capitalised_after_period"},
            "the capitalised first word of a sentence",
            "capitalised words anywhere",  # too broad
        ),
        (
            {"family": "structural", "kind": "closing_bracket"},
            "closing brackets and parentheses",
            "opening brackets and parentheses",  # wrong token
        ),
    ],
    "semantic": [
        ({"family": "semantic", "concept": "music", "threshold": 0.5}, "words about music", "words about art"),
        ({"family": "semantic", "concept": "sport", "threshold": 0.5}, "words about sport", "words about games"),
        ({"family": "semantic", "concept": "food", "threshold": 0.5}, "words about food", "words about drink"),
        (
            {"family": "semantic", "concept": "war", "threshold": 0.5},
            "words about war and the military",
            "words about politics",
        ),
    ],
}


def planted_latents(
    per_family: int, full: bool, families: list[str], densities: tuple[float, ...] = DENSITIES
) -> list[dict]:
    """The bench's latents: every family at every fidelity; ``full`` crosses concepts x fidelity x density."""
    out = []
    for f_index, (family, concepts) in enumerate((f, CONCEPTS[f]) for f in families):
        for c_index, (rule, truth, near) in enumerate(concepts[:per_family]):
            if full:
                grid = [(fid, den) for fid in FIDELITIES for den in densities]
            else:  # one latent per concept; fidelity and density turn over both concepts and families, so
                # that even one concept per family spans every fidelity and both densities
                grid = [
                    (
                        FIDELITIES[(c_index + f_index) % 4],
                        densities[(c_index + f_index // 2) % len(densities)],
                    )
                ]
            for fidelity, density in grid:
                out.append(
                    {
                        "family": family,
                        "concept": f"{family}:{c_index}",
                        "rule": rule,
                        "truth": truth,
                        "near": near,
                        "fidelity": fidelity,
                        "density": density,
                    }
                )
    return out


def other_descriptions(latents: list[dict], seed: int) -> list[str]:
    """For each latent, the description of a latent of another concept (another family where possible)."""
    rng = random.Random(seed)
    out = []
    for lat in latents:
        pool = [j for j, o in enumerate(latents) if o["family"] != lat["family"]]
        pool = pool or [j for j, o in enumerate(latents) if o["concept"] != lat["concept"]]
        out.append(latents[rng.choice(pool)]["truth"] if pool else "")
    return out


def cli(*args: str, required: bool = True) -> int:
    """Run ``autointerp ARGS``; a failure stops the bench when ``required``, else it is returned."""
    cmd = [sys.executable, "-m", "autointerp.cli", *args]
    print("$ autointerp " + " ".join(args), flush=True)
    done = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0 and required:
        sys.exit(f"command failed ({done.returncode}): {' '.join(cmd)}")
    return done.returncode


def write_import(path: Path, descriptions: dict[int, str], model: str) -> None:
    with path.open("w") as f:
        for latent, text in descriptions.items():
            record = {
                "modelId": "planted",
                "layer": "planted",
                "index": str(latent),
                "description": text,
                "explanationModelName": model,
                "typeName": "bench",
            }
            f.write(json.dumps(record) + "\n")


def kendall_tau(intended: list[int], scores: list[float]) -> float:
    """Kendall's tau-a between an intended order and scores (ties in scores count 0)."""
    pairs = concordant = 0
    for i in range(len(intended)):
        for j in range(i + 1, len(intended)):
            pairs += 1
            concordant += np.sign(intended[i] - intended[j]) * np.sign(scores[i] - scores[j])
    return float(concordant / pairs) if pairs else float("nan")


def bootstrap_mean(values: list[float], seed: int = 0, n: int = 2000) -> list[float] | None:
    v = np.asarray([x for x in values if x == x], dtype=float)
    if len(v) < 2:
        return None
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(n, len(v)))].mean(1)
    return [round(float(np.quantile(means, 0.025)), 3), round(float(np.quantile(means, 0.975)), 3)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", default="", help="where to write the database (default: a temporary folder)")
    p.add_argument("--tokens", type=int, default=200_000)
    p.add_argument("--per-family", type=int, default=4, help="concepts per family (1-4)")
    p.add_argument("--full", action="store_true", help="every concept at every fidelity and density")
    p.add_argument("--scorers", default="embedding", help="comma-separated; LLM-judged ones need a capable model")
    p.add_argument("--backend", default="local")
    p.add_argument("--model", default="")
    p.add_argument("--base-url", default="")
    p.add_argument("--families", default=",".join(CONCEPTS), help="comma-separated subset of " + ", ".join(CONCEPTS))
    p.add_argument(
        "--densities", default=",".join(map(str, DENSITIES)), help="target firing densities per token, comma-separated"
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = sorted(set(families) - set(CONCEPTS))
    if unknown or not families:
        sys.exit(f"--families {args.families!r}: unknown {unknown}; choose from {', '.join(CONCEPTS)}")
    densities = tuple(float(d) for d in args.densities.split(","))
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="planted-bench-"))
    db = Path(args.db) if args.db else work / "planted.duckdb"
    latents = planted_latents(max(1, min(4, args.per_family)), args.full, families, densities)
    others = other_descriptions(latents, args.seed)
    planted_file = work / "planted.json"
    planted_file.write_text(
        json.dumps(
            {
                "seed": args.seed,
                "latents": [
                    {
                        "description": lat["truth"],
                        "rule": lat["rule"],
                        "density": lat["density"],
                        "fidelity": lat["fidelity"],
                    }
                    for lat in latents
                ],
            },
            indent=1,
        )
    )
    llm = ["--backend", args.backend] + (["--model", args.model] if args.model else [])
    llm += ["--base-url", args.base_url] if args.base_url else []
    quiet = ["--quiet"]
    cli("collect", "--db", str(db), "--sae", f"planted:{planted_file}", "--tokens", str(args.tokens), *quiet)
    cli("explain", "--db", str(db), *llm, *quiet)
    for name, texts in (
        ("truth", [lat["truth"] for lat in latents]),
        ("near", [lat["near"] for lat in latents]),
        ("other", others),
    ):
        path = work / f"{name}.jsonl"
        write_import(path, {lat: text for lat, text in enumerate(texts) if text}, f"planted-{name}")
        cli("import", "--db", str(db), "--from", "neuronpedia", "--path", str(path), "--model", f"planted-{name}")
    con = duckdb.connect(str(db), read_only=True)
    configs = dict(
        con.execute(
            "SELECT CASE WHEN explainer LIKE 'import%' THEN replace(model, 'planted-', '') ELSE 'own' END, "
            "any_value(config_hash) FROM explanation_rows WHERE status = 'explained' GROUP BY 1"
        ).fetchall()
    )
    con.close()
    scorers = args.scorers
    failed = []  # a configuration with no ok latent to score (too few tokens for the densities) is reported
    for name, cfg in configs.items():
        if cli("score", "--db", str(db), "--scorers", scorers, "--explanations", cfg, *llm, *quiet, required=False):
            failed.append(name)
    if "own" in configs and "own" not in failed:
        cli(
            "score",
            "--db",
            str(db),
            "--scorers",
            scorers,
            "--explanations",
            configs["own"],
            "--control",
            "empty",
            *llm,
            *quiet,
        )
    report = summarise(db, latents, configs, scorers.split(","), args)
    report["score_runs_failed"] = failed
    if not report["cue_probes"]:  # no detection/fuzzing run: measure the probes on the stored test sets
        report["cue_probes"] = stored_cue_probes(db)
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report))


def summarise(db: Path, latents: list[dict], configs: dict[str, str], scorers: list[str], args) -> dict:
    con = duckdb.connect(str(db), read_only=True)
    by_config = {cfg: name for name, cfg in configs.items()}
    rows = con.execute(
        "SELECT latent, split_part(explanation_id, '/', 1), scorer, control, score, chance->>'score' "
        "FROM scores WHERE status = 'scored'"
    ).fetchall()
    stats = dict(
        (r[0], (r[1], r[2])) for r in con.execute("SELECT latent, status, n_active_contexts FROM latents").fetchall()
    )
    cues = con.execute(
        "SELECT scorer, avg(balanced_accuracy), count(*) FROM scores WHERE scorer LIKE 'cue:%' GROUP BY 1 ORDER BY 1"
    ).fetchall()
    own = dict(
        con.execute(
            "SELECT latent, explanation FROM explanation_rows WHERE status = 'explained' AND config_hash = ?",
            [configs.get("own", "")],
        ).fetchall()
    )
    con.close()
    table: dict[tuple[str, int, str], float] = {}
    chance: dict[str, float] = {}
    for latent, cfg, scorer, control, score, ch in rows:
        if scorer.startswith("cue:") or score is None:
            continue
        name = "empty" if control == "empty" else by_config.get(cfg) if control == "" else None
        if name:
            table[(scorer, latent, name)] = score
        if ch is not None:
            chance[scorer] = float(ch)
    capable = args.backend != "local" or bool(args.model)
    validity = {}
    for scorer in scorers:
        taus, holds, by_fid, empty = [], [], {}, []
        for latent, lat in enumerate(latents):
            got = [table.get((scorer, latent, n)) for n in ("truth", "near", "other")]
            if None not in got:
                taus.append(kendall_tau([3, 2, 1], got))
                holds.append(got[0] > got[1] > got[2])
            for n in ("truth", "own"):
                if (scorer, latent, n) in table:
                    by_fid.setdefault(n, {}).setdefault(lat["fidelity"], []).append(table[(scorer, latent, n)])
            if (scorer, latent, "empty") in table:
                empty.append(table[(scorer, latent, "empty")])
        validity[scorer] = {
            "kendall_tau": round(float(np.mean(taus)), 3) if taus else None,
            "kendall_tau_ci95": bootstrap_mean(taus, args.seed),
            "order_holds": round(float(np.mean(holds)), 3) if holds else None,
            "n_latents": len(taus),
            "by_fidelity": {
                n: {str(f): round(float(np.mean(v)), 3) for f, v in sorted(d.items(), reverse=True)}
                for n, d in by_fid.items()
            },
            "empty_control": round(float(np.mean(empty)), 3) if empty else None,
            "empty_control_ci95": bootstrap_mean(empty, args.seed),
            "chance": chance.get(scorer),
            "needs_capable_model": scorer in LLM_JUDGED and not capable,
        }
    recovery = recovery_ranks(own, latents)
    coverage = {}
    for density in sorted({lat["density"] for lat in latents}):
        idx = [i for i, lat in enumerate(latents) if lat["density"] == density]
        coverage[str(density)] = {
            "latents": len(idx),
            "ok": sum(stats.get(i, ("", 0))[0] == "ok" for i in idx),
            "activating_contexts": [int(stats.get(i, ("", 0))[1]) for i in idx],
        }
    return {
        "bench": "planted",
        "tokens": args.tokens,
        "latents": len(latents),
        "backend": args.backend,
        "model": args.model or "embedded SmolLM2-135M-Instruct",
        "validity": validity,
        "recovery": recovery,
        "coverage": coverage,
        "cue_probes": {name: {"mean": round(float(m), 3), "n": int(n)} for name, m, n in cues},
        "note": "LLM-judged scorers need a capable model: rows marked needs_capable_model are at chance by "
        "construction on the embedded 135M model.",
    }


def stored_cue_probes(db: Path) -> dict:
    """The cue probes of bench/cues.py on the database's test sets, built as the scorers would build them."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "cues.py"), str(db)],
        cwd=ROOT,
        text=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if done.returncode != 0 or not done.stdout.strip():
        return {"error": (done.stderr or "bench/cues.py printed nothing").strip().splitlines()[-1:]}
    return {"from": "bench/cues.py on the stored test sets", **json.loads(done.stdout.strip().splitlines()[-1])}


def recovery_ranks(own: dict[int, str], latents: list[dict]) -> dict:
    """Rank of each latent's true description among all planted descriptions, by similarity to its own
    explanation under the embedding scorer's sentence model (1 = the true one is nearest)."""
    from autointerp.score.embedding import EmbeddingScorer

    if not own:
        return {"n": 0}
    descriptions = sorted({lat["truth"] for lat in latents})
    model = EmbeddingScorer()
    d = model.embed(descriptions)
    ranks = []
    for latent, text in sorted(own.items()):
        if latent >= len(latents) or not text:
            continue
        e = model.embed([text])[0]
        sims = d @ e
        true = sims[descriptions.index(latents[latent]["truth"])]
        ranks.append(int((sims > true).sum()) + 1)
    return {
        "n": len(ranks),
        "mean_rank": round(float(np.mean(ranks)), 2) if ranks else None,
        "top1": round(float(np.mean([r == 1 for r in ranks])), 3) if ranks else None,
        "chance_mean_rank": (len(descriptions) + 1) / 2,
        "candidates": len(descriptions),
    }


if __name__ == "__main__":
    main()
