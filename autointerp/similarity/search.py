"""Search latents by meaning: the query's sentence embedding against each latent's latest explanation.

Method (an exact scan, no approximate index): the latest explanation of every latent and its stored
embedding (``explanation_vectors``, the LATEST rule of ``embeddings.py``) are read once into a float32
matrix held in memory (:class:`SearchIndex`); a query is one matrix-vector product (the vectors are
L2-normalised, so the product is the cosine) and an ``argpartition`` for the top k. At a million
explanations that is 1.5 GB of RAM and tens of milliseconds a query on two CPU cores (bench/search.py).
DuckDB's ``array_cosine_similarity`` over the stored FLOAT[384] column gives the same ranking but scans
and converts every row per query (seconds at a million rows); the ``vss`` extension (HNSW) would be
faster still but is downloaded from extensions.duckdb.org, which an offline machine cannot reach.

Keyword (optional): a case-insensitive substring of the explanation. It is a *boost*, not a filter: the
latents whose explanation contains it rank first (by similarity), then the others (by similarity), so
a keyword never hides a close match in meaning and ``keyword_match`` says which hits contain it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import AutointerpError
from ..models.sentence_encoder import SentenceEncoder
from .embeddings import ExplanationVectors, explanation_vectors, pending, stored_dim

log = logging.getLogger(__name__)
MAX_QUERY_CHARS = 1000
MAX_K = 10_000


@dataclass
class SearchHit:
    """One latent found by a search, best first."""

    latent: int
    explanation: str
    """The latent's latest explanation (the one ``latent_summary`` shows)."""
    similarity: float
    """Cosine of the query's embedding to the explanation's (-1 to 1)."""
    keyword_match: bool | None
    """Whether the explanation contains the keyword (case-insensitive); None when no keyword was given."""
    score: float | None
    """The latent's headline detection score (balanced accuracy, chance 0.5), or None when not scored."""
    fuzzing_score: float | None
    """The fuzzing score of the same explanation, or None."""
    frequency: float | None
    """Share of tokens on which the latent fires."""
    explanation_id: str
    """``<explainer config hash>/<latent>``, as in ``scores.explanation_id``."""

    def as_dict(self) -> dict:
        return asdict(self)


def check_query(text) -> str:
    """The query, stripped; an empty or over-long one is an AutointerpError."""
    if not isinstance(text, str) or not text.strip():
        raise AutointerpError(
            "The search text is empty.",
            "a few words saying what the latent is about, e.g. 'numbers in dates'.",
            'pass the text: autointerp search --db PATH "what you are looking for".',
        )
    if len(text) > MAX_QUERY_CHARS:
        raise AutointerpError(f"The search text is {len(text)} characters long.", f"at most {MAX_QUERY_CHARS}.")
    return text.strip()


def check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise AutointerpError(f"k is {k!r}.", f"an integer from 1 to {MAX_K}.", "pass -k N with N in that range.")
    return k


def count_explained(con: duckdb.DuckDBPyConnection) -> int:
    """Latents with at least one explained explanation."""
    return con.execute(
        "SELECT count(DISTINCT latent) FROM explanation_rows WHERE status = 'explained' AND explanation IS NOT NULL"
    ).fetchone()[0]


def count_missing(con: duckdb.DuckDBPyConnection, encoder: str) -> int:
    """Latents whose latest explanation has no current embedding under the encoder digest ``encoder``."""
    if stored_dim(con) is None:  # a read-only file older than migration 0015
        return count_explained(con)
    return len(pending(con, encoder, latest_only=True))


def no_explanations_error(path: str = "PATH") -> AutointerpError:
    return AutointerpError(
        f"{path} has no explanations to search.",
        "a database with explained latents.",
        f"run `autointerp explain --db {path}` first, or `autointerp import` explanations into it.",
    )


def missing_note(missing: int, path: str = "PATH") -> str:
    """What a read-only search says when some latest explanations lack an embedding."""
    return (
        f"{missing:,} explanation(s) have no embedding yet and cannot be found; embed them with "
        f"`autointerp search --db {path} --embed` (opens the file for writing once)."
    )


class SearchIndex:
    """The latest explanations of a database and their embeddings, in memory, ready for queries.

    Load once (``SearchIndex.load``) and query many times: the browser and the API keep one. The
    ``encoder`` embeds queries; it must be the one the stored vectors were made with (its digest).
    """

    def __init__(self, vectors, encoder: SentenceEncoder, missing: int = 0):
        self.latents = vectors.latents
        self.config_hashes = vectors.config_hashes
        self.explanations = vectors.explanations
        self._texts = pa.array(vectors.explanations, pa.string())
        self.vectors = np.ascontiguousarray(vectors.vectors, np.float32)
        self.encoder = encoder
        self.missing = missing
        """Latents whose latest explanation has no stored embedding (not searchable)."""
        self._lock = threading.Lock()  # the encoder's cache is not thread-safe

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection, encoder: SentenceEncoder | None = None) -> SearchIndex:
        """Read the stored embeddings of every latent's latest explanation (``con`` may be read-only)."""
        encoder = encoder or SentenceEncoder()
        digest = encoder.digest()
        if count_explained(con) == 0:
            raise no_explanations_error(_path_of(con))
        missing = count_missing(con, digest)
        if stored_dim(con) is None:
            vectors = _empty(encoder.dim, digest)
        else:
            vectors = explanation_vectors(con, digest)
        return cls(vectors, encoder, missing)

    def __len__(self) -> int:
        return len(self.latents)

    def only(self, ranges: list[tuple[int, int]]) -> SearchIndex:
        """The index of the latents in ``ranges`` (inclusive (lo, hi) pairs, as ``parse_latent_ranges`` gives)."""
        keep = np.zeros(len(self), bool)
        for lo, hi in ranges:
            keep |= (self.latents >= lo) & (self.latents <= hi)
        rows = np.flatnonzero(keep)
        vectors = ExplanationVectors(
            latents=self.latents[rows],
            config_hashes=[self.config_hashes[i] for i in rows],
            explanations=[self.explanations[i] for i in rows],
            vectors=self.vectors[rows],
            encoder=self.encoder.digest(),
        )
        return SearchIndex(vectors, self.encoder, self.missing)

    def embed_query(self, text: str) -> np.ndarray:
        torch = self.encoder._torch
        with self._lock:
            # One short text is too small a forward pass to split across threads: on a busy machine the
            # threads' waits for each other made it 5-10x slower (bench/search.py). Process-wide, so restored.
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                return self.encoder.embed([text], cache=False)[0].astype(np.float32)
            finally:
                torch.set_num_threads(threads)

    def query(self, text: str, k: int = 20, keyword: str | None = None) -> list[tuple[int, float, bool | None]]:
        """(row, similarity, keyword_match) of the top ``k`` rows for ``text``, best first."""
        text, k = check_query(text), check_k(k)
        if not len(self):
            return []
        similarity = self.vectors @ self.embed_query(text)
        rank = similarity
        matches = None
        if keyword is not None and keyword.strip():
            matches = pc.match_substring(self._texts, keyword.strip(), ignore_case=True).to_numpy(zero_copy_only=False)
            rank = similarity + 4.0 * matches  # cosines lie in [-1, 1]: every match outranks every non-match
        k = min(k, len(rank))
        top = np.argpartition(-rank, k - 1)[:k] if k < len(rank) else np.arange(len(rank))
        # ties in order of latent, so a result does not depend on argpartition's choice
        top = top[np.lexsort((self.latents[top], -rank[top]))]
        return [(int(i), float(similarity[i]), None if matches is None else bool(matches[i])) for i in top]


def _path_of(con: duckdb.DuckDBPyConnection) -> str:
    row = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchone()
    return row[0] if row and row[0] else "PATH"


def _empty(dim: int, digest: str) -> ExplanationVectors:
    return ExplanationVectors(np.empty(0, np.int64), [], [], np.empty((0, dim), np.float32), digest)


def hits(con: duckdb.DuckDBPyConnection, index: SearchIndex, found) -> list[SearchHit]:
    """SearchHits for ``index.query``'s rows, with each latent's frequency and its explanation's scores."""
    if not found:
        return []
    latents = [int(index.latents[i]) for i, _, _ in found]
    ids = [f"{index.config_hashes[row]}/{latent}" for (row, _, _), latent in zip(found, latents, strict=True)]
    frequency = dict(
        con.execute("SELECT latent, frequency FROM latents WHERE latent IN (SELECT unnest(?))", [latents]).fetchall()
    )
    # the headline scores of exactly this explanation, as latent_summary picks them (latest scored, no control)
    scores = {
        (r[0], r[1]): r[2]
        for r in con.execute(
            "SELECT explanation_id, scorer, score FROM scores WHERE control = '' AND status = 'scored' "
            "AND scorer IN ('detection', 'fuzzing') AND explanation_id IN (SELECT unnest(?)) "
            "QUALIFY row_number() OVER (PARTITION BY explanation_id, scorer "
            "ORDER BY created_at DESC, config_hash DESC) = 1",
            [ids],
        ).fetchall()
    }
    out = []
    for (row, similarity, matched), latent, own_id in zip(found, latents, ids, strict=True):
        out.append(
            SearchHit(
                latent=latent,
                explanation=index.explanations[row],
                similarity=similarity,
                keyword_match=matched,
                score=scores.get((own_id, "detection")),
                fuzzing_score=scores.get((own_id, "fuzzing")),
                frequency=frequency.get(latent),
                explanation_id=own_id,
            )
        )
    return out


def search(
    con: duckdb.DuckDBPyConnection,
    text: str,
    k: int = 20,
    keyword: str | None = None,
    encoder: SentenceEncoder | None = None,
) -> list[SearchHit]:
    """The ``k`` latents whose latest explanation is closest in meaning to ``text``, best first.

    Uses the stored embeddings only (``con`` may be read-only); a latent whose latest explanation has
    none yet is not found, and a warning says how many (``embed_explanations`` adds them). ``keyword``
    ranks the latents whose explanation contains it first (see the module docstring). A database
    without explanations, an empty ``text`` or a bad ``k`` is an AutointerpError.
    """
    text, k = check_query(text), check_k(k)
    index = SearchIndex.load(con, encoder)
    if index.missing:
        log.warning(missing_note(index.missing, _path_of(con)))
    return hits(con, index, index.query(text, k, keyword))
