"""The latent list in SQL: paging, sorting, filtering and search all run in DuckDB.

An SAE can have a million latents, so the list is never loaded into Python to be sorted: the query
orders by a whitelisted column (never by a string from the request), filters and searches with
parameters (ILIKE, wildcards escaped), and returns one page with LIMIT/OFFSET.

Per latent the list shows its latest explained explanation and, per scorer, the headline ``score`` of
that explanation (``control = ''``, the latest scored row of each scorer). These are read from the base
views, so the browser does not depend on a summary view. Picking the latest rows takes seconds at a
million latents, so the server does it once (``materialize``: the database cannot change while it is
open read-only) and each request then sorts one flat table; the static writer reads the list once,
straight from the views (``inline``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import parse_latent_ranges
from ..errors import AutointerpError

#: sort key -> column of the list relation. Scorer columns are added per database as ``score:<scorer>``.
SORT_COLUMNS = {
    "latent": "l.latent",
    "frequency": "l.frequency",
    "n_firing": "l.n_firing",
    "max_activation": "l.max_activation",
    "mean_activation": "l.mean_activation",
    "status": "l.status",
    "explanation": "l.explanation",
}
#: The in-memory table ``materialize`` writes (in the in-memory catalog, never in the file).
TABLE = "memory.main.latent_list"
STATUSES = ("ok", "too_few_examples", "dead")
ORDERS = ("asc", "desc")
MAX_LIMIT = 1000


def latest_explanation_sql(where: str = "") -> str:
    """SQL of the latest explained explanation of each latent; ``where`` narrows the latents first."""
    return f"""
    SELECT latent, config_hash, explanation, explainer, model, created_at
    FROM explanations
    WHERE status = 'explained' AND explanation IS NOT NULL {("AND " + where) if where else ""}
    QUALIFY row_number() OVER (PARTITION BY latent ORDER BY created_at DESC, config_hash DESC) = 1
"""


#: Scorers computed from the decoder direction and the subject model, never from the explanation: the stage
#: stores the same number under each explanation, so the latest scored row of the latent is shown whichever
#: explanation it was stored under (as ``latent_summary`` does, migration 0014).
EXPLANATION_FREE_SCORERS = ("input_score", "output_score")
_FREE = ", ".join(f"'{s}'" for s in EXPLANATION_FREE_SCORERS)

#: Per (latent, scorer), the latest scored headline score of the latest explanation (needs CTE ``expl``);
#: for the explanation-free scorers, the latest scored row of the latent.
HEADLINE_SCORES = f"""
    SELECT s.latent, s.scorer, s.score, s.config_hash, s.ci_low, s.ci_high, s.n_examples
    FROM scores s JOIN expl e ON s.latent = e.latent AND s.explanation_id = e.config_hash || '/' || e.latent
    WHERE s.control = '' AND s.status = 'scored' AND s.scorer NOT IN ({_FREE})
    QUALIFY row_number() OVER (PARTITION BY s.latent, s.scorer ORDER BY s.created_at DESC, s.config_hash DESC) = 1
    UNION ALL
    SELECT s.latent, s.scorer, s.score, s.config_hash, s.ci_low, s.ci_high, s.n_examples
    FROM scores s
    WHERE s.control = '' AND s.status = 'scored' AND s.scorer IN ({_FREE})
    QUALIFY row_number() OVER (PARTITION BY s.latent, s.scorer
                               ORDER BY s.created_at DESC, s.config_hash DESC, s.explanation_id DESC) = 1
"""


@dataclass(frozen=True)
class ListQuery:
    """One request for the list: what to show and in which order."""

    sort: str = "latent"
    order: str = "asc"
    q: str = ""
    status: str = ""
    explained: bool = False
    offset: int = 0
    limit: int | None = 100
    latents: str = ""


def scorers(cur) -> list[str]:
    """Scorers with at least one real (not control) score, in name order: the list's score columns."""
    return [
        r[0]
        for r in cur.execute(
            "SELECT DISTINCT scorer FROM scores WHERE control = '' AND status = 'scored' ORDER BY scorer"
        ).fetchall()
    ]


def parse_request(params: dict[str, str], known_scorers: list[str]) -> ListQuery:
    """A ListQuery from URL parameters; anything outside the whitelists is an AutointerpError."""
    unknown = set(params) - {"sort", "order", "q", "status", "explained", "offset", "limit"}
    if unknown:
        raise AutointerpError(
            f"Unknown parameter(s) {', '.join(sorted(unknown))}.", "sort, order, q, status, explained, offset, limit."
        )
    sort = params.get("sort", "latent")
    valid = list(SORT_COLUMNS) + [f"score:{s}" for s in known_scorers]
    if sort not in valid:
        raise AutointerpError(
            f"Cannot sort by {sort!r}.", "one of " + ", ".join(valid) + ".", "pick a column of the list."
        )
    order = params.get("order", "asc")
    if order not in ORDERS:
        raise AutointerpError(f"order {order!r} is not known.", "asc or desc.")
    status = params.get("status", "")
    if status and status not in STATUSES:
        raise AutointerpError(f"status {status!r} is not known.", "empty or one of " + ", ".join(STATUSES) + ".")
    explained = params.get("explained", "")
    if explained not in ("", "0", "1"):
        raise AutointerpError(f"explained {explained!r} is not known.", "0 or 1.")
    offset = _integer(params, "offset", 0, 0, 2**53)
    limit = _integer(params, "limit", 100, 1, MAX_LIMIT)
    q = params.get("q", "")
    if len(q) > 500:
        raise AutointerpError(f"The search text is {len(q)} characters long.", "at most 500 characters.")
    return ListQuery(sort=sort, order=order, q=q, status=status, explained=explained == "1", offset=offset, limit=limit)


def _integer(params: dict[str, str], name: str, default: int, lo: int, hi: int | None) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise AutointerpError(f"{name} {raw!r} is not an integer.", f"an integer >= {lo}.") from None
    if value < lo or (hi is not None and value > hi):
        raise AutointerpError(f"{name} is {value}.", f"an integer from {lo}" + (f" to {hi}." if hi else " up."))
    return value


def search_words(q: str) -> list[str]:
    """The words of a search: each must occur in the explanation, case-insensitively."""
    return q.split()


def _like_pattern(word: str) -> str:
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass(frozen=True)
class ListSource:
    """Where the list's rows come from: a relation (table name or parenthesised query) with columns
    latent, status, frequency, n_firing, max_activation, mean_activation, explanation, s0 .. sN (the
    headline score of each of ``scorers``), and the parameters of that relation's SQL."""

    relation: str
    params: tuple
    scorers: tuple[str, ...]


def _base_sql(known: list[str]) -> str:
    # one row per (latent, scorer) in head, so each max() is that row's value
    pivot = "".join(
        f", max(score) FILTER (WHERE scorer = ?) AS s{i}, max(ci_low) FILTER (WHERE scorer = ?) AS lo{i}"
        f", max(ci_high) FILTER (WHERE scorer = ?) AS hi{i}, max(n_examples) FILTER (WHERE scorer = ?) AS n{i}"
        for i in range(len(known))
    )
    score_cols = "".join(f", p.s{i}" for i in range(len(known))) + "".join(
        f", p.lo{i}, p.hi{i}, p.n{i}" for i in range(len(known))
    )
    return f"""
        WITH expl AS ({latest_explanation_sql()}),
             head AS ({HEADLINE_SCORES}),
             p AS (SELECT latent{pivot} FROM head GROUP BY latent)
        SELECT l.latent, l.status, l.frequency, l.n_firing, l.max_activation, l.mean_activation,
               e.explanation{score_cols}
        FROM latents l LEFT JOIN expl e ON e.latent = l.latent LEFT JOIN p ON p.latent = l.latent"""


def _pivot_params(known: list[str]) -> tuple:
    """The parameters of ``_base_sql``'s pivot: each scorer's name once per pivoted column."""
    return tuple(name for name in known for _ in range(4))


def inline(cur) -> ListSource:
    """The list read straight from the views, by every query that uses it."""
    known = scorers(cur)
    return ListSource(f"({_base_sql(known)})", _pivot_params(known), tuple(known))


def materialize(cur) -> ListSource:
    """The list computed once into an in-memory table (the file is attached read-only and untouched)."""
    known = scorers(cur)
    cur.execute(f"CREATE OR REPLACE TABLE {TABLE} AS {_base_sql(known)}", list(_pivot_params(known)))
    return ListSource(TABLE, (), tuple(known))


def list_latents(cur, query: ListQuery, source: ListSource) -> dict:
    """One page of the list: ``{"total", "offset", "limit", "sort", "order", "scorers", "rows"}``.

    ``total`` counts every latent that passes the filters, not only the page's.
    """
    sql, params = _select(query, source)
    rows = cur.execute(sql, params).fetchall()
    where, where_params = _where(query)
    total = cur.execute(
        f"SELECT count(*) FROM {source.relation} AS l {where}", list(source.params) + where_params
    ).fetchone()[0]
    return {
        "total": total,
        "offset": query.offset,
        "limit": query.limit,
        "sort": query.sort,
        "order": query.order,
        "scorers": list(source.scorers),
        "rows": [_row(r, source.scorers) for r in rows],
    }


def iter_rows(cur, query: ListQuery, source: ListSource, batch: int = 10_000):
    """Every row ``query`` selects (its limit too, if any), fetched ``batch`` at a time."""
    sql, params = _select(query, source)
    cur.execute(sql, params)
    while chunk := cur.fetchmany(batch):
        for r in chunk:
            yield _row(r, source.scorers)


def _row(r: tuple, known) -> dict:
    return {
        "latent": r[0],
        "status": r[1],
        "frequency": r[2],
        "n_firing": r[3],
        "max_activation": r[4],
        "mean_activation": r[5],
        "explanation": r[6],
        "scores": {name: r[7 + i] for i, name in enumerate(known) if r[7 + i] is not None},
        # the 95% interval of each shown score and its n: [low, high, n] (low and high None for old rows)
        "intervals": {
            name: list(r[7 + len(known) + 3 * i : 10 + len(known) + 3 * i])
            for i, name in enumerate(known)
            if r[7 + i] is not None
        },
    }


def _select(query: ListQuery, source: ListSource) -> tuple[str, list]:
    """The page's SQL and parameters; every value from the request is a parameter or a whitelisted name."""
    where, where_params = _where(query)
    if query.sort.startswith("score:"):
        sort_sql = f"l.s{list(source.scorers).index(query.sort[len('score:') :])}"
    else:
        sort_sql = SORT_COLUMNS[query.sort]
    direction = "DESC" if query.order == "desc" else "ASC"
    sql = f"SELECT * FROM {source.relation} AS l {where} ORDER BY {sort_sql} {direction} NULLS LAST, l.latent ASC"
    params = list(source.params) + where_params
    if query.limit is not None:
        sql += " LIMIT ? OFFSET ?"
        params += [query.limit, query.offset]
    return sql, params


def _where(query: ListQuery) -> tuple[str, list]:
    clauses, params = [], []
    if query.status:
        clauses.append("l.status = ?")
        params.append(query.status)
    if query.explained:
        clauses.append("l.explanation IS NOT NULL")
    for word in search_words(query.q):
        clauses.append("l.explanation ILIKE ? ESCAPE '\\'")
        params.append(_like_pattern(word))
    ranges = parse_latent_ranges(query.latents)
    if ranges:
        clauses.append("(" + " OR ".join("l.latent BETWEEN ? AND ?" for _ in ranges) + ")")
        params += [v for pair in ranges for v in pair]
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params
