"""``/api/search?q=&k=&keyword=``: search by meaning for the served browser.

The query encoder and the stored explanation vectors are loaded once per server, at the first search
(so a browser nobody searches in never loads the model), and then shared by every request. The server
opens the database read-only, so it never embeds: explanations without a stored embedding are not
found, and the answer says how many and how to add them (``autointerp search --db PATH --embed``).
"""

from __future__ import annotations

import threading
from urllib.parse import parse_qs

from ..config import parse_latent_ranges
from ..errors import AutointerpError
from ..similarity.search import SearchIndex, check_k, check_query, hits, missing_note

MAX_K = 100


class MeaningSearch:
    """The search-by-meaning endpoint of one server: ``answer(cursor, query_string)`` -> JSON-ready dict."""

    def __init__(self, db_name: str, latents: str = ""):
        self.db_name = db_name
        self.ranges = parse_latent_ranges(latents)  # the server's --latents: hits only among those
        self._index: SearchIndex | None = None
        self._lock = threading.Lock()

    def index(self, cur) -> SearchIndex:
        with self._lock:  # one load however many first requests arrive together
            if self._index is None:
                index = SearchIndex.load(cur)
                self._index = index.only(self.ranges) if self.ranges else index
            return self._index

    def answer(self, cur, query_string: str) -> dict:
        params = parse_params(query_string)
        text = check_query(params.get("q", ""))
        k = check_k(_int(params.get("k", "20")))
        if k > MAX_K:
            raise AutointerpError(f"k is {k}.", f"an integer from 1 to {MAX_K}.")
        keyword = params.get("keyword") or None
        index = self.index(cur)
        found = hits(cur, index, index.query(text, k, keyword))
        return {
            "query": text,
            "keyword": keyword,
            "searched": len(index),
            "missing": index.missing,
            "note": missing_note(index.missing, self.db_name) if index.missing else None,
            "hits": [{**h.as_dict(), "url": f"latents/{h.latent}.html"} for h in found],
        }


def parse_params(query_string: str) -> dict[str, str]:
    try:
        raw = parse_qs(query_string, keep_blank_values=True, max_num_fields=5, errors="strict")
    except ValueError as exc:
        raise AutointerpError(f"Cannot read the query string: {exc}.", "at most 5 UTF-8 parameters.") from None
    unknown = set(raw) - {"q", "k", "keyword"}
    if unknown:
        raise AutointerpError(f"Unknown parameter(s) {', '.join(sorted(unknown))}.", "q, k, keyword.")
    repeated = [name for name, values in raw.items() if len(values) > 1]
    if repeated:
        raise AutointerpError(f"Parameter(s) {', '.join(repeated)} given more than once.", "each at most once.")
    return {name: values[0] for name, values in raw.items()}


def _int(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise AutointerpError(f"k {raw!r} is not an integer.", f"an integer from 1 to {MAX_K}.") from None
