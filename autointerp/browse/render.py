"""HTML of the browser's pages.

Corpus tokens, explanations, prompts and completions are untrusted text: a corpus can hold
``<script>`` and an LLM can write anything. Every such string goes through ``html.escape`` (quotes
included) here, and nothing else builds HTML from data: the list page's script only sets
``textContent``. A latent page is the same HTML from the server and in the static site; its links are
relative (``../index.html``, ``../assets/``), which resolve in both.
"""

from __future__ import annotations

import math
from html import escape

#: Background of a token: positive activations orange, negative (signed latents) blue.
POSITIVE_RGB = "255, 140, 0"
NEGATIVE_RGB = "40, 110, 255"
#: Tokens whose characters would be invisible or would break the line are shown as these marks.
VISIBLE = {"\n": "↵", "\r": "␍", "\t": "⇥"}


def e(value) -> str:
    """Escaped text of any value (None is an empty string)."""
    # NUL is not allowed in HTML text: browsers turn it into U+FFFD or drop it, each in its own way
    return "" if value is None else escape(str(value).replace("\x00", "\ufffd"), quote=True)


def number(value, digits: int = 4) -> str:
    """A number for reading: '—' when missing, integers with thousands separators."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return format(value, f".{digits}g")


def percent(value) -> str:
    return "—" if value is None else f"{value * 100:.3g}%"


def activation_title(value: float) -> str:
    """The activation as shown on hover (and read back by the tests)."""
    return format(value, ".4g")


def visible_token(token: str) -> str:
    """The token as displayed: spaces kept (the page shows them with white-space: pre-wrap), control marks visible."""
    return "".join(VISIBLE.get(ch, ch) for ch in token)


def token_spans(tokens: list[str], activations: list[float], scale: float) -> str:
    """One span per token, shaded by |activation| / scale, with the activation as its title."""
    out = []
    for token, act in zip(tokens, activations, strict=True):
        alpha = min(abs(act) / scale, 1.0) if scale and scale > 0 else 0.0
        rgb = NEGATIVE_RGB if act < 0 else POSITIVE_RGB
        cls = "tok neg" if act < 0 else ("tok" if act else "tok zero")
        out.append(
            f'<span class="{cls}" style="background-color: rgba({rgb}, {alpha:.3f})" '
            f'title="{e(activation_title(act))}">{e(visible_token(token))}</span>'
        )
    return "".join(out)


def verdict_badge(v: dict) -> str:
    """A scorer's answer on one context: ✓ when it matches the label, ✗ when not, ? when unscored."""
    name = v["scorer"] if v["variant"] in (None, "", "plain") else f"{v['scorer']} ({v['variant']})"
    if v["prediction"] is None:
        mark, cls, title = "?", "verdict unscored", f"no readable answer: {v.get('reason') or 'unknown'}"
    else:
        right = v["prediction"] == v["label"]
        mark, cls = ("✓", "verdict right") if right else ("✗", "verdict wrong")
        title = f"predicted {'yes' if v['prediction'] else 'no'}, label {'yes' if v['label'] else 'no'}"
    prob = "" if v["probability"] is None else f" p={v['probability']:.2f}"
    return (
        f'<span class="{cls}" data-scorer="{e(v["scorer"])}" data-variant="{e(v["variant"])}" '
        f'title="{e(title)}">{e(name)} {mark}{e(prob)}</span>'
    )


def page(title: str, body: str, root: str, scripts: tuple[str, ...] = (), body_attrs: str = "") -> str:
    """A whole HTML document; ``root`` is the relative path to the site's root ('' or '../')."""
    tags = "".join(f'<script src="{e(root + s)}"></script>' for s in scripts)
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{e(title)}</title><link rel="stylesheet" href="{e(root)}assets/browser.css"></head>'
        f"<body{body_attrs}>{body}{tags}</body></html>\n"
    )


#: The search-by-meaning box (served only: it needs the query encoder); ``assets/search.js`` runs it.
MEANING = """<form id="meaning" role="search" autocomplete="off">
<label>Search by meaning <input id="meaning-q" type="search" placeholder="what the latent is about"></label>
<button type="submit" id="meaning-go">Search</button></form>
<p id="meaning-note" class="muted" aria-live="polite"></p><ol id="meaning-hits"></ol>
"""


def list_page(mode: str, db_name: str) -> str:
    """The latent list's shell; ``assets/list.js`` fills it from the API (server) or the data files (static)."""
    body = f"""<header><h1>Latents</h1><p class="muted">{e(db_name)}</p></header>
<form id="controls" role="search" autocomplete="off">
<label>Search explanations <input id="q" type="search" placeholder="words in the explanation"></label>
<label>Status <select id="status"><option value="">any</option><option value="ok">ok</option>
<option value="too_few_examples">too few examples</option><option value="dead">dead</option></select></label>
<label><input id="explained" type="checkbox"> explained only</label>
<label>Per page <select id="limit"><option>50</option><option selected>100</option><option>500</option></select></label>
</form>
{MEANING if mode == "server" else ""}<p id="summary" aria-live="polite">Loading…</p>
<table id="latent-table"><thead><tr id="header-row"></tr></thead><tbody id="latent-rows"></tbody></table>
<nav id="pager"><button type="button" id="prev">← previous</button> <span id="page"></span>
<button type="button" id="next">next →</button></nav>"""
    scripts = ("assets/list.js",) + (("data/index.js",) if mode == "static" else ("assets/search.js",))
    return page(f"autointerp — {db_name}", body, "", scripts, f' data-mode="{e(mode)}"')


def latent_page(d: dict, db_name: str) -> str:
    """A latent's page: explanation, statistics, scores, contexts with verdicts, interventions."""
    scale = d["max_activation"] or 0.0
    parts = [
        f'<nav><a id="back" href="../index.html">← all latents</a> <span class="muted">{e(db_name)}</span></nav>',
        f'<h1 id="title">Latent {d["latent"]}</h1>',
    ]
    if d["explanation"]:
        x = d["explanation"]
        parts.append(
            f'<p id="explanation" class="explanation">{e(x["text"])}</p>'
            f'<p class="muted">by {e(x["model"])} ({e(x["explainer"])} explainer, {e(x["config_hash"])})</p>'
        )
    else:
        parts.append('<p id="explanation" class="explanation none">No explanation yet.</p>')
    parts.append(_stats(d))
    parts.append(_output_side(d))
    parts.append(_scores(d["scores"]))
    parts.append(_similar(d.get("similar") or []))
    if d.get("matches") is not None:
        parts.append(_matches(d["matches"]))
    sections = (
        ("top-contexts", "Top contexts", "top"),
        ("quantile-contexts", "Quantile contexts", "quantile"),
        ("random-contexts", "Non-activating contexts", "random"),
        ("weak-contexts", "Weakest-activating contexts used as negatives", "weak"),
    )
    for section_id, heading, kind in sections:
        contexts = [c for c in d["contexts"] if c["kind"] == kind]
        if kind == "weak" and not contexts:
            continue  # only latents collected with --weak-negatives have them
        items = "".join(_context(c, scale) for c in contexts) or '<p class="muted">None.</p>'
        parts.append(
            f'<section id="{section_id}"><h2>{heading} <span class="muted">({len(contexts)})</span></h2>'
            f"{items}</section>"
        )
    parts.append(_interventions(d["interventions"]))
    parts.append(_explanation_history(d["explanations"]))
    return page(f"Latent {d['latent']} — {db_name}", "\n".join(parts), "../")


def _stats(d: dict) -> str:
    items = [
        ("hookpoint", e(d["hookpoint"])),
        ("status", e(d["status"])),
        ("frequency", percent(d["frequency"])),
        ("firing positions", number(d["n_firing"])),
        ("of tokens", number(d["n_tokens"])),
        ("max |activation|", number(d["max_activation"])),
        ("mean |activation|", number(d["mean_activation"])),
        ("active contexts", number(d["n_active_contexts"])),
    ]
    if d["reason"]:
        items.append(("reason", e(d["reason"])))
    return '<dl id="stats" class="stats">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def _output_side(d: dict) -> str:
    """What the latent writes: its input and output scores (Arad et al.) beside their random-direction
    chance, and the tokens its decoder direction promotes and suppresses through the logit lens."""
    parts = ['<section id="output"><h2>Output side</h2>']
    headline = []
    for scorer, label in (("output_score", "output score"), ("input_score", "input score")):
        s = next((x for x in d["scores"] if x["scorer"] == scorer and not x["control"]), None)
        if s is None:
            continue
        chance = s["chance"].get("score") if isinstance(s["chance"], dict) else None
        headline.append(
            f'<span class="headline" data-scorer="{e(scorer)}">{label} <b class="value">{number(s["score"], 3)}</b>'
            f' <span class="muted">(random direction {number(chance, 3)})</span></span>'
        )
    if headline:
        parts.append('<p id="output-scores">' + " · ".join(headline) + "</p>")
    lens = d.get("logits") or {}
    if lens.get("note"):
        parts.append(f'<p id="lens-note" class="muted">Logit lens: {e(lens["note"])}</p>')
    elif lens.get("promoted") or lens.get("suppressed"):
        for sign, heading in (("promoted", "Promoted tokens"), ("suppressed", "Suppressed tokens")):
            items = "".join(
                f'<li class="logit" data-token-id="{e(t["token_id"])}"><span class="logit-token">'
                f"{e(visible_token(t['token'] or ''))}</span> "
                f'<span class="logit-value">{number(t["value"], 3)}</span></li>'
                for t in lens.get(sign, [])
            )
            parts.append(
                f'<div class="logits"><h3>{heading}</h3><ol id="{sign}-tokens" class="logits">{items}</ol></div>'
            )
    else:
        parts.append('<p id="lens-note" class="muted">No logit lens stored (`autointerp lens --db ...`).</p>')
    parts.append("</section>")
    return "".join(parts)


def _similar(rows: list[dict]) -> str:
    """The nearest latents of the same SAE by decoder cosine, each linked to its page."""
    if not rows:
        body = '<p class="muted">No decoder neighbours stored (`autointerp similar --db ...`).</p>'
    else:
        body = (
            '<table class="similar"><thead><tr><th>latent</th><th>relation</th><th>decoder cos</th>'
            "<th>explanation sim</th><th>explanation</th></tr></thead><tbody>"
            + "".join(
                f'<tr class="similar-row" data-latent="{e(r["other"])}" data-relation="{e(r["relation"])}">'
                f'<td><a href="{e(r["other"])}.html">{e(r["other"])}</a></td><td>{e(r["relation"])}</td>'
                f"<td>{number(r['decoder_cos'], 3)}</td><td>{number(r['explanation_sim'], 3)}</td>"
                f"<td>{e(r['explanation'] or '')}</td></tr>"
                for r in rows
            )
            + "</tbody></table>"
        )
    return (
        f'<section id="similar-latents"><h2>Similar latents <span class="muted">(this SAE)</span></h2>{body}</section>'
    )


def _matches(rows: list[dict]) -> str:
    """The latent's one-to-one match in the compared SAE (``--matches``)."""
    if not rows:
        body = '<p class="muted">No match in the compared SAE.</p>'
    else:
        body = (
            '<table class="matches"><thead><tr><th>latent there</th><th>decoder cos</th><th>activation corr</th>'
            "<th>explanation sim</th><th>its explanation</th></tr></thead><tbody>"
            + "".join(
                f'<tr class="match-row" data-latent="{e(r["other"])}"><td>{e(r["other"])}</td>'
                f"<td>{number(r['decoder_cos'], 3)}</td><td>{number(r['activation_corr'], 3)}</td>"
                f"<td>{number(r['explanation_sim'], 3)}</td><td>{e(r['explanation'] or '')}</td></tr>"
                for r in rows
            )
            + "</tbody></table>"
        )
    heading = 'Similar latents <span class="muted">(compared SAE)</span>'
    return f'<section id="matched-latents"><h2>{heading}</h2>{body}</section>'


def with_interval(s: dict) -> str:
    """A score as "0.74 [0.65, 0.82], n=100" where its row has a 95% interval, else the number alone."""
    text = number(s["score"], 3)
    if s["score"] is None or s.get("ci_low") is None or s.get("ci_high") is None:
        return text
    method = e(s.get("ci_method") or "")
    return (
        f'{text} <span class="ci" title="95% interval ({method})">[{number(s["ci_low"], 2)}, '
        f"{number(s['ci_high'], 2)}], n={number(s['n_examples'])}</span>"
    )


def _scores(scores: list[dict]) -> str:
    if not scores:
        return '<section id="scores"><h2>Scores</h2><p class="muted">Not scored yet.</p></section>'
    head = ("scorer", "control", "score", "chance", "balanced acc.", "precision", "recall", "F1", "AUROC", "n")
    rows = []
    for s in scores:
        chance = s["chance"].get("score") if isinstance(s["chance"], dict) else None
        cells = [
            e(s["scorer"]),
            e(s["control"] or "—"),
            with_interval(s),
            number(chance, 3),
            number(s["balanced_accuracy"], 3),
            number(s["precision"], 3),
            number(s["recall"], 3),
            number(s["f1"], 3),
            number(s["auroc"], 3),
            number(s["n_examples"]),
        ]
        rows.append(
            f'<tr data-scorer="{e(s["scorer"])}" data-control="{e(s["control"])}">'
            + "".join(f"<td>{c}</td>" for c in cells)
            + "</tr>"
        )
    return (
        '<section id="scores"><h2>Scores</h2><table class="scores"><thead><tr>'
        + "".join(f"<th>{h}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></section>"
    )


def _context(c: dict, scale: float) -> str:
    where = c["kind"] if c["quantile"] is None else f"quantile {c['quantile']}"
    meta = (
        f'<span class="meta">{e(where)} · {e(c["split"])} · rank {c["rank"]} · '
        f"peak {number(c['max_activation'])}</span>"
    )
    verdicts = "".join(verdict_badge(v) for v in c["verdicts"])
    return (
        f'<div class="context" data-context-id="{c["context_id"]}" data-split="{e(c["split"])}" '
        f'data-kind="{e(c["kind"])}">{meta}<div class="tokens">'
        f"{token_spans(c['tokens'], c['activations'], scale)}</div>"
        + (f'<div class="verdicts">{verdicts}</div>' if verdicts else "")
        + "</div>"
    )


def _interventions(groups: list[dict]) -> str:
    if not groups:
        return '<section id="interventions"><h2>Interventions</h2><p class="muted">None yet.</p></section>'
    parts = ['<section id="interventions"><h2>Interventions</h2>']
    for g in groups:
        parts.append(
            f'<p class="meta">steering {e(g["config_hash"])}: scale {number(g["scale"])}, '
            f"target KL {number(g['target_kl'])}, achieved KL {number(g['achieved_kl'])}</p>"
        )
        rows = "".join(
            f'<tr data-prompt-index="{p["prompt_index"]}"><td class="prompt">{e(p["prompt"])}</td>'
            f'<td class="clean">{e(p["clean"])}</td><td class="steered">{e(p["steered"])}</td></tr>'
            for p in g["prompts"]
        )
        parts.append(
            '<table class="interventions"><thead><tr><th>prompt</th><th>clean completion</th>'
            f"<th>steered completion</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    parts.append("</section>")
    return "".join(parts)


def _explanation_history(rows: list[dict]) -> str:
    if not rows:
        return ""
    body = "".join(
        f"<tr><td>{e(r['created_at'])}</td><td>{e(r['explainer'])}</td><td>{e(r['model'])}</td>"
        f"<td>{e(r['status'])}</td><td>{e(r['explanation'] if r['explanation'] is not None else r['reason'])}"
        f"</td></tr>"
        for r in rows
    )
    return (
        '<section id="explanations"><h2>Every explanation</h2><table><thead><tr><th>written</th><th>explainer</th>'
        f"<th>model</th><th>status</th><th>explanation or reason</th></tr></thead><tbody>{body}</tbody></table>"
        "</section>"
    )
