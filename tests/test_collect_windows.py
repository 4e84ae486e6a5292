"""Source documents, several windows per sequence and jittered peaks on a real collect of the embedded
model (issue 14 item 3, issue 15 item 6)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from autointerp.collect.stage import collect
from autointerp.executor import LocalExecutor

from .conftest import assert_same_collect, query, small_config

pytestmark = pytest.mark.slow

WINDOW = 32


@pytest.fixture(scope="module")
def windows_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("windows") / "windows.duckdb"
    collect(small_config(windows_per_sequence=4), path, progress=False)
    return path


def test_document_ids_follow_the_eos_and_a_located_start_gives_those_of_one_pass():
    import torch

    from autointerp.corpus import SequencePacker, nonempty_texts, open_corpus, texts_of
    from autointerp.models import embedded

    _, tokenizer = embedded.load_smollm2(torch.float32)
    packer = SequencePacker(tokenizer, 64, doc_batch=7)
    corpus = open_corpus("embedded")
    whole = list(itertools.islice(packer.sequences_with_documents(texts_of(corpus, "text")), 120))
    plain = itertools.islice(packer.sequences(texts_of(corpus, "text")), len(whole))
    assert all((t == p).all() for (t, _), p in zip(whole, plain, strict=True))
    tokens = np.concatenate([t[1:] if packer.bos is not None else t for t, _ in whole])
    documents = np.concatenate([d[1:] if packer.bos is not None else d for _, d in whole])
    assert documents[0] == 0
    # A new document starts exactly after each EOS.
    assert np.array_equal(np.diff(documents), (tokens[:-1] == packer.eos).astype(np.int64))
    starts = [0, 1, 5, 33, 64, 119]
    found, _ = packer.locate(texts_of(corpus, "text"), starts)
    for first, (document, offset) in zip(starts, found, strict=True):
        seeked = itertools.islice(
            packer.sequences_with_documents(nonempty_texts(corpus, "text", document), offset, document),
            len(whole) - first,
        )
        for (t, d), (t1, d1) in zip(seeked, whole[first:], strict=True):
            assert (t == t1).all() and (d == d1).all(), first


def test_every_example_has_its_document(collected_db, windows_db):
    for db in (collected_db, windows_db):
        n, missing = query(db, "SELECT count(*), count(*) FILTER (document_id IS NULL) FROM examples")[0]
        assert n > 0 and missing == 0


def test_several_windows_per_sequence_never_overlap(collected_db, windows_db):
    per_sequence = query(
        windows_db,
        "SELECT latent, sequence_id, count(*) FROM examples WHERE kind != 'random' GROUP BY ALL",
    )
    assert max(n for *_, n in per_sequence) > 1, "some latent must have several contexts in a sequence"
    assert max(n for *_, n in per_sequence) <= 4
    # No two examples of a latent share a context or a token.
    overlapping = query(
        windows_db,
        "SELECT count(*) FROM examples a JOIN examples b ON a.latent = b.latent AND a.sequence_id = b.sequence_id "
        f"AND a.context_id < b.context_id AND abs(a.start_pos - b.start_pos) < {WINDOW}",
    )[0][0]
    duplicated = query(windows_db, "SELECT count(*) - count(DISTINCT (latent, context_id)) FROM examples")[0][0]
    assert overlapping == 0 and duplicated == 0
    one, four = (
        dict(query(db, "SELECT latent, n_active_contexts FROM latents ORDER BY latent"))
        for db in (collected_db, windows_db)
    )
    assert all(four[lat] >= one[lat] for lat in one) and sum(four.values()) > sum(one.values())
    assert max(four.values()) <= 4 * small_config().tokens // 256


def test_several_windows_per_sequence_in_shards_equal_one_pass(windows_db, tmp_path):
    db = tmp_path / "shards.duckdb"
    collect(small_config(windows_per_sequence=4), db, progress=False, executor=LocalExecutor(shard_tokens=2048))
    assert_same_collect(windows_db, db)


def test_jittered_peaks_are_spread_over_the_window(collected_db):
    rows = query(collected_db, "SELECT activations FROM examples WHERE kind != 'random'")
    peaks = np.array([int(np.argmax(np.abs(acts))) for (acts,) in rows])
    share = np.bincount(peaks, minlength=WINDOW) / len(peaks)
    assert len(peaks) > 1000
    assert share.max() <= 0.15, f"index {share.argmax()} holds {share.max():.0%} of activating windows"
    assert (share[WINDOW // 4 : WINDOW - 1] > 0.01).all(), "every index of the documented range is used"


# The document-level split (collect/select.py keys the split on each context's source document).
@pytest.mark.parametrize("which", ["one window", "four windows"])
def test_explain_and_test_sets_share_no_document(collected_db, windows_db, which):
    db = collected_db if which == "one window" else windows_db
    shared = query(
        db,
        "SELECT count(*) FROM (SELECT latent, document_id FROM examples WHERE split = 'explain' "
        "INTERSECT SELECT latent, document_id FROM examples WHERE split = 'test')",
    )[0][0]
    assert shared == 0
