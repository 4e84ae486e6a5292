"""Read a text corpus through ``datasets`` and pack it into fixed-length token sequences.

Every source is streamed (``streaming=True``), so memory does not depend on the corpus size.
Documents are tokenized in batches, joined with the tokenizer's EOS token and cut into sequences of
``seq_len`` tokens; where the tokenizer adds a BOS token by itself, each sequence starts with it.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import AutointerpError
from .models import embedded

_FILE_BUILDERS = {".txt": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def _embedded_texts():
    """The embedded corpus as a ``datasets`` dataset with columns title and text."""
    from datasets import Dataset

    records = json.loads(embedded.wiki_summaries_file().read_text(encoding="utf-8"))
    rows = [(v.get("title", k), v.get("extract", "")) for k, v in records.items()]
    rows = [r for r in rows if r[1]]
    return Dataset.from_dict({"title": [r[0] for r in rows], "text": [r[1] for r in rows]})


def open_corpus(
    dataset: str, split: str = "train", text_column: str = "text", dataset_config: str = ""
) -> Iterable[dict]:
    """A streamed ``datasets`` dataset for a hub name, a local file or folder, or "embedded".

    Raises a clear error when the source cannot be read or has no ``text_column``.
    """
    from datasets import load_dataset

    if dataset == embedded.EMBEDDED:
        ds = _embedded_texts()
    else:
        path = Path(dataset)
        try:
            if path.is_file():
                builder = _FILE_BUILDERS.get(path.suffix.lower())
                if builder is None:
                    raise AutointerpError(
                        f"Cannot read {path}: unknown file type {path.suffix!r}.",
                        "one of " + ", ".join(sorted(_FILE_BUILDERS)),
                        "convert the file or pass a folder.",
                    )
                ds = load_dataset(builder, data_files=str(path), split=split, streaming=True)
            elif path.is_dir():
                ds = load_dataset(str(path), split=split, streaming=True)
            else:
                ds = load_dataset(dataset, dataset_config or None, split=split, streaming=True)
        except AutointerpError:
            raise
        except Exception as exc:  # datasets raises many types; all mean "cannot read this source"
            raise AutointerpError(
                f"Could not read the dataset {dataset!r} (split {split!r}): {type(exc).__name__}: {exc}",
                "a hub dataset reachable from this machine, or a local txt/jsonl/json/parquet/csv file or folder.",
                "check the name, --split and --dataset-config, or pass a local file.",
            ) from exc
    _check_text_column(ds, dataset, text_column)
    return ds


def _check_text_column(ds, dataset: str, text_column: str) -> None:
    columns = getattr(ds, "column_names", None)
    if not columns:
        try:
            first = next(iter(ds))
        except StopIteration:
            raise AutointerpError(f"The dataset {dataset!r} is empty.", "at least one row of text.") from None
        except UnicodeDecodeError as exc:
            raise not_utf8_error(exc) from None
        columns = list(first)
    if text_column not in columns:
        raise AutointerpError(
            f"The dataset {dataset!r} has no column {text_column!r}.",
            f"one of its columns: {', '.join(map(str, columns))}.",
            "pass --text-column with the column that holds the text.",
        )


@dataclass
class SequencePacker:
    """Turns documents into token sequences of exactly ``seq_len`` tokens."""

    tokenizer: object
    seq_len: int
    doc_batch: int = 256

    def __post_init__(self) -> None:
        tok = self.tokenizer
        self.eos = tok.eos_token_id
        probe = tok("a").input_ids
        self.bos = tok.bos_token_id if (tok.bos_token_id is not None and probe[:1] == [tok.bos_token_id]) else None

    @property
    def body(self) -> int:
        """Corpus tokens per sequence (the sequence minus its BOS)."""
        return self.seq_len - (1 if self.bos is not None else 0)

    def _documents(self, texts: Iterable[str]) -> Iterator[list[int]]:
        """Each non-empty text's token ids, EOS appended, tokenized ``doc_batch`` texts at a time."""
        batch: list[str] = []
        for text in texts:
            if text:
                batch.append(text)
            if len(batch) >= self.doc_batch:
                yield from self._encode(batch)
                batch = []
        if batch:
            yield from self._encode(batch)

    def _encode(self, batch: list[str]) -> Iterator[list[int]]:
        for ids in self.tokenizer(batch, add_special_tokens=False).input_ids:
            yield ids + ([self.eos] if self.eos is not None else [])

    def count_sequences(self, texts: Iterable[str], limit: int | None = None) -> int:
        """Whole sequences ``sequences(texts)`` yields, counting no further than ``limit`` (None: to the
        end). Tokenizing only, so a corpus too short is found before the model runs."""
        needed = None if limit is None else limit * self.body
        total = 0
        for ids in self._documents(texts):
            total += len(ids)
            if needed is not None and total >= needed:
                return limit
        return total // self.body

    def locate(
        self, texts: Iterable[str], sequence_starts: list[int]
    ) -> tuple[list[tuple[int, int] | None], int | None]:
        """Where each sequence of ``sequence_starts`` (ascending) begins: (index of its first document
        among the non-empty texts, tokens of that document before it), or None past the corpus's end;
        and, when the corpus ended first, how many whole sequences it holds. One tokenizing pass, after
        which ``sequences(texts[document:], start_offset)`` starts right there: a shard seeks instead
        of tokenizing everything before it."""
        wanted = [first * self.body for first in sequence_starts]
        found: list[tuple[int, int] | None] = [None] * len(wanted)
        k, position = 0, 0
        for index, ids in enumerate(self._documents(texts)):
            end = position + len(ids)
            while k < len(wanted) and wanted[k] < end:
                found[k] = (index, wanted[k] - position)
                k += 1
            if k == len(wanted):
                return found, None
            position = end
        return found, position // self.body

    def sequences(self, texts: Iterable[str], start_offset: int = 0) -> Iterator[np.ndarray]:
        """Sequences of ``seq_len`` tokens from ``texts``, dropping the first ``start_offset`` tokens of
        the joined stream (see ``locate``, which reads the same documents)."""
        for tokens, _ in self.sequences_with_documents(texts, start_offset):
            yield tokens

    def sequences_with_documents(
        self, texts: Iterable[str], start_offset: int = 0, first_document: int = 0
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Like ``sequences``, each sequence with the id of the document every position came from
        (int64, same shape). A document's id is its index among the corpus's non-empty texts (the index
        ``locate`` returns), so ``first_document`` is the id of the first text of ``texts``: a shard that
        seeks to ``locate``'s position gives the same ids as a pass from the start. A leading BOS takes
        the id of the token after it."""
        body = self.body
        buffer: list[int] = []
        documents: list[int] = []
        skip = start_offset
        for index, ids in enumerate(self._documents(texts), start=first_document):
            if skip:
                dropped = min(skip, len(ids))
                ids, skip = ids[dropped:], skip - dropped
            buffer.extend(ids)
            documents.extend(itertools.repeat(index, len(ids)))
            yield from self._drain(buffer, documents, body)

    def _drain(self, buffer: list[int], documents: list[int], body: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        start = 0
        while len(buffer) - start >= body:
            chunk = buffer[start : start + body]
            owners = documents[start : start + body]
            start += body
            if self.bos is not None:
                chunk = [self.bos] + chunk
                owners = owners[:1] + owners
            yield np.asarray(chunk, dtype=np.int64), np.asarray(owners, dtype=np.int64)
        del buffer[:start]
        del documents[:start]


def texts_of(ds: Iterable[dict], text_column: str) -> Iterator[str]:
    rows = iter(ds)
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:  # a binary file passed as text
            raise not_utf8_error(exc) from None
        text = row[text_column]
        if isinstance(text, str):
            yield text


def nonempty_texts(ds: Iterable[dict], text_column: str, skip: int = 0) -> Iterator[str]:
    """The texts the packer reads (non-empty strings), without the first ``skip`` of them."""
    texts = (t for t in texts_of(ds, text_column) if t)
    return itertools.islice(texts, skip, None)


def available_sequences(tokenizer, corpus, text_column: str, seq_len: int, wanted: int | None) -> int:
    """Whole sequences of ``seq_len`` tokens in ``corpus``, counted up to ``wanted`` (None: all)."""
    return SequencePacker(tokenizer, seq_len).count_sequences(texts_of(corpus, text_column), wanted)


def no_sequence_error(seq_len: int) -> AutointerpError:
    """The corpus holds no whole sequence (empty, blank lines, or shorter than one sequence)."""
    return AutointerpError(
        f"The corpus holds no whole sequence of {seq_len} tokens (it is empty, blank or shorter).",
        f"a corpus of at least {seq_len} tokens of text.",
        "pass a larger --dataset (or check --text-column), or a smaller --seq-len.",
    )


def not_utf8_error(exc: UnicodeDecodeError) -> AutointerpError:
    return AutointerpError(
        f"The corpus is not UTF-8 text: {exc}.",
        "a UTF-8 text corpus (txt, jsonl, json, csv) or a parquet file.",
        "convert the file to UTF-8 (e.g. `iconv -f latin1 -t utf-8`), or pass another --dataset.",
    )
