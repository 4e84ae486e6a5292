"""Everything one latent's page shows, read for a batch of latents at a time.

The server asks for one latent per request; the static writer asks for a few hundred at once, so a
site of many latents costs a few queries per batch rather than per latent. The result is plain data
(dicts, lists, numbers, strings); ``render`` turns it into HTML and the JSON API returns it as it is.

Which explanation and scores: the latest explained explanation (as in the list), its latest scored row
per scorer with ``control = ''``, and for comparison the latest scored control row of the same scorer
configuration whose borrowed explanation has the same explainer configuration (as ``latent_summary``). The
per-context verdicts are the ``score_examples`` rows of exactly those real scores, joined to the
latent's contexts on ``context_id``; the intervention scorers' rows are left out of that join, since
their ``context_id`` is a completion id, not a context. The input and output scores do not depend on the
explanation, so theirs is the latent's latest scored row under any explanation (as in ``latent_summary``).
The promoted and suppressed tokens are the ``latent_logits`` rows of the current collect; the similar
latents within the SAE are its ``similar_latents`` rows, and those of a compared SAE the matches of a
comparison file (``matches.py``) when the browser was given one.
"""

from __future__ import annotations

import json

from .listing import EXPLANATION_FREE_SCORERS, latest_explanation_sql
from .matches import Comparison, matched_latents

STATS = (
    "latent",
    "hookpoint",
    "status",
    "reason",
    "n_firing",
    "n_tokens",
    "frequency",
    "max_activation",
    "mean_activation",
    "n_active_contexts",
)
#: The explanation-free scorers as an SQL list (names from the code, never from a request).
FREE = ", ".join(f"'{s}'" for s in EXPLANATION_FREE_SCORERS)
SCORE_COLUMNS = (
    "scorer",
    "control",
    "model",
    "score",
    "balanced_accuracy",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "auroc",
    "correlation",
    "n_examples",
    "n_unscored",
    "ci_low",
    "ci_high",
    "ci_method",
    "status",
    "reason",
    "chance",
    "explanation_id",
    "config_hash",
)


def _scope(column: str, ids: list[int]) -> str:
    """SQL restricting ``column`` to ``ids`` (sorted ints): the range lets DuckDB skip row groups by their
    min/max, the list keeps exactly the batch. Only ints are inlined, never text."""
    return f"{column} BETWEEN {int(ids[0])} AND {int(ids[-1])} AND {column} IN ({', '.join(str(int(i)) for i in ids)})"


def latent_details(cur, latents: list[int], comparison: Comparison | None = None) -> dict[int, dict]:
    """latent -> its page's data, for those of ``latents`` the database has; with ``comparison``, each
    latent's matches in the compared SAE too (key ``matches``; None without one)."""
    if not latents:
        return {}
    ids = sorted({int(x) for x in latents})
    details: dict[int, dict] = {}
    for row in cur.execute(
        f"SELECT {', '.join(STATS)} FROM latents WHERE {_scope('latent', ids)} ORDER BY latent"
    ).fetchall():
        details[row[0]] = dict(zip(STATS, row, strict=True)) | {
            "explanation": None,
            "explanations": [],
            "scores": [],
            "contexts": [],
            "interventions": [],
            "logits": {"promoted": [], "suppressed": [], "note": None},
            "similar": [],
            "matches": None if comparison is None else [],
        }
    if not details:
        return {}
    ids = sorted(details)
    _explanations(cur, ids, details)
    _scores(cur, ids, details)
    _contexts(cur, ids, details)
    _interventions(cur, ids, details)
    _logits(cur, ids, details)
    _similar(cur, ids, details)
    if comparison is not None:
        for latent, found in matched_latents(cur, ids, comparison).items():
            details[latent]["matches"] = found
    return details


def _explanations(cur, ids: list[int], details: dict[int, dict]) -> None:
    latest = {r[0]: r for r in cur.execute(latest_explanation_sql(_scope("latent", ids))).fetchall()}
    for latent, chash, text, explainer, model, created in latest.values():
        details[latent]["explanation"] = {
            "text": text,
            "config_hash": chash,
            "explainer": explainer,
            "model": model,
            "explanation_id": f"{chash}/{latent}",
            "created_at": str(created),
        }
    for latent, chash, text, explainer, model, status, reason, created in cur.execute(
        "SELECT latent, config_hash, explanation, explainer, model, status, reason, created_at FROM explanations "
        f"WHERE {_scope('latent', ids)} ORDER BY latent, created_at DESC, config_hash DESC"
    ).fetchall():
        details[latent]["explanations"].append(
            {
                "config_hash": chash,
                "explanation": text,
                "explainer": explainer,
                "model": model,
                "status": status,
                "reason": reason,
                "created_at": str(created),
            }
        )


def _scores(cur, ids: list[int], details: dict[int, dict]) -> None:
    """The real scores of the latest explanation, one row per scorer, each with its control paired on the
    same (explainer configuration, scorer configuration)."""
    columns = ", ".join(SCORE_COLUMNS)
    rows = cur.execute(f"""
        WITH expl AS ({latest_explanation_sql(_scope("latent", ids))}),
        shown AS (
            SELECT s.latent, {", ".join("s." + c for c in SCORE_COLUMNS)}, e.config_hash AS explainer_config
            FROM scores s JOIN expl e ON e.latent = s.latent AND s.explanation_id = e.config_hash || '/' || e.latent
            WHERE {_scope("s.latent", ids)} AND s.status = 'scored' AND s.control = ''
              AND s.scorer NOT IN ({FREE})
            QUALIFY row_number() OVER (PARTITION BY s.latent, s.scorer
                                       ORDER BY s.created_at DESC, s.config_hash DESC) = 1
            UNION ALL
            SELECT s.latent, {", ".join("s." + c for c in SCORE_COLUMNS)}, NULL AS explainer_config
            FROM scores s
            WHERE {_scope("s.latent", ids)} AND s.status = 'scored' AND s.control = '' AND s.scorer IN ({FREE})
            QUALIFY row_number() OVER (PARTITION BY s.latent, s.scorer
                                       ORDER BY s.created_at DESC, s.config_hash DESC, s.explanation_id DESC) = 1),
        paired AS (
            SELECT c.latent, {", ".join("c." + c for c in SCORE_COLUMNS)}
            FROM scores c JOIN shown r ON c.latent = r.latent AND c.scorer = r.scorer AND c.config_hash = r.config_hash
            WHERE {_scope("c.latent", ids)} AND c.status = 'scored' AND c.control <> ''
              AND starts_with(c.explanation_id, r.explainer_config || '/')
            QUALIFY row_number() OVER (PARTITION BY c.latent, c.scorer, c.control
                                       ORDER BY c.created_at DESC, c.explanation_id DESC) = 1)
        SELECT latent, {columns} FROM shown UNION ALL SELECT latent, {columns} FROM paired
        ORDER BY latent, scorer, control""").fetchall()
    for row in rows:
        entry = dict(zip(SCORE_COLUMNS, row[1:], strict=True))
        entry["chance"] = json.loads(entry["chance"]) if entry["chance"] else {}
        details[row[0]]["scores"].append(entry)


def _contexts(cur, ids: list[int], details: dict[int, dict]) -> None:
    """Top, quantile and random contexts, each with the verdicts of the shown real scores on it."""
    verdicts: dict[tuple[int, int], list[dict]] = {}
    for latent, context_id, scorer, variant, label, prediction, probability, reason in cur.execute(f"""
            WITH expl AS ({latest_explanation_sql(_scope("latent", ids))}),
            head AS (
                SELECT s.latent, s.explanation_id, s.scorer, s.config_hash FROM scores s
                JOIN expl e ON e.latent = s.latent AND s.explanation_id = e.config_hash || '/' || e.latent
                WHERE {_scope("s.latent", ids)} AND s.control = '' AND s.status = 'scored'
                  AND s.scorer NOT LIKE 'intervention%'
                QUALIFY row_number() OVER (PARTITION BY s.latent, s.scorer
                                           ORDER BY s.created_at DESC, s.config_hash DESC) = 1)
            SELECT x.latent, x.context_id, x.scorer, x.variant, x.label, x.prediction, x.probability, x.reason
            FROM score_examples x JOIN head h ON x.latent = h.latent AND x.explanation_id = h.explanation_id
                 AND x.scorer = h.scorer AND x.config_hash = h.config_hash AND x.control = ''
            WHERE {_scope("x.latent", ids)}
            ORDER BY x.latent, x.context_id, x.scorer, x.variant""").fetchall():
        verdicts.setdefault((latent, context_id), []).append(
            {
                "scorer": scorer,
                "variant": variant,
                "label": label,
                "prediction": prediction,
                "probability": probability,
                "reason": reason,
            }
        )
    order = {"top": 0, "quantile": 1, "random": 2, "weak": 3}
    rows = cur.execute(f"""
        SELECT latent, split, kind, quantile, rank, context_id, tokens, activations, max_activation
        FROM examples WHERE {_scope("latent", ids)} AND kind <> 'hard'
        ORDER BY latent, kind, max_activation < 0, quantile DESC NULLS LAST, split, rank""").fetchall()
    for latent, split, kind, quantile, rank, context_id, tokens, acts, peak in rows:
        details[latent]["contexts"].append(
            {
                "split": split,
                "kind": kind,
                "quantile": quantile,
                "rank": rank,
                "context_id": context_id,
                "tokens": list(tokens),
                "activations": list(acts),
                "max_activation": peak,
                "verdicts": verdicts.get((latent, context_id), []),
            }
        )
    for d in details.values():
        d["contexts"].sort(key=lambda c: order.get(c["kind"], 3))  # stable: keeps the SQL order within a kind


def _interventions(cur, ids: list[int], details: dict[int, dict]) -> None:
    """Per steering configuration and target KL (output_choice steers each latent over a schedule of
    signed targets under one configuration), each prompt with its clean and steered completion."""
    groups: dict[tuple[int, str, float], dict] = {}
    for latent, chash, index, prompt, steered, completion, scale, target_kl, achieved_kl in cur.execute(f"""
            SELECT latent, config_hash, prompt_index, prompt, steered, completion, scale, target_kl, achieved_kl
            FROM interventions WHERE {_scope("latent", ids)}
            ORDER BY latent, created_at DESC, config_hash, target_kl DESC, prompt_index, steered""").fetchall():
        group = groups.get((latent, chash, target_kl))
        if group is None:
            group = groups[(latent, chash, target_kl)] = {
                "config_hash": chash,
                "target_kl": target_kl,
                "achieved_kl": None,
                "scale": None,
                "prompts": {},
            }
            details[latent]["interventions"].append(group)
        entry = group["prompts"].setdefault(
            index, {"prompt_index": index, "prompt": prompt, "clean": None, "steered": None}
        )
        entry["steered" if steered else "clean"] = completion
        if steered:
            group["scale"], group["achieved_kl"] = scale, achieved_kl
    for group in groups.values():
        group["prompts"] = [group["prompts"][k] for k in sorted(group["prompts"])]


def _logits(cur, ids: list[int], details: dict[int, dict]) -> None:
    """The logit lens of the current collect: per sign, the tokens in rank order with their logit; or the
    note saying why the lens does not apply to the latent."""
    for latent, sign, rank, token_id, token, value, note in cur.execute(f"""
            SELECT latent, sign, rank, token_id, token, value, note FROM latent_logits
            WHERE {_scope("latent", ids)} ORDER BY latent, sign, rank""").fetchall():
        lens = details[latent]["logits"]
        if sign is None:
            lens["note"] = note
        elif sign in ("promoted", "suppressed"):
            lens[sign].append({"rank": rank, "token_id": token_id, "token": token, "value": value})


def _similar(cur, ids: list[int], details: dict[int, dict]) -> None:
    """The latent's nearest latents by decoder cosine (current collect), nearest first, with the relation
    the view names and the other latent's explanation."""
    for latent, other, rank, relation, dec, sim, freq, text in cur.execute(f"""
            SELECT latent, other, rank, relation, decoder_cos, explanation_sim, other_frequency, other_explanation
            FROM similar_latents WHERE {_scope("latent", ids)} ORDER BY latent, rank""").fetchall():
        details[latent]["similar"].append(
            {
                "other": other,
                "rank": rank,
                "relation": relation,
                "decoder_cos": dec,
                "explanation_sim": sim,
                "other_frequency": freq,
                "explanation": text,
            }
        )
