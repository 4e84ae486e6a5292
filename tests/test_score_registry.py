"""The scorer and explainer tables: every name a user may pick is registered, and every registered
scorer declares what the protocol asks for."""

from __future__ import annotations

from autointerp import config
from autointerp.explain.explainers import EXPLAINERS
from autointerp.score import registry
from autointerp.score.base import NEEDS


def test_every_scorer_a_user_may_pick_is_registered():
    for name in config.SCORERS:
        assert all(s in registry.SCORERS for s in registry.scorer_names([name])), name
    assert registry.scorer_names(["detection", "intervention", "detection"]) == [
        "detection",
        "intervention",
        "intervention_choice",
        "intervention_surprisal",
    ]


def test_registered_scorers_declare_the_protocol():
    for name in registry.SCORERS:
        cls = registry.scorer_class(name)
        assert cls.name == name
        assert cls.needs and set(cls.needs) <= set(NEEDS), name
        for method in ("identity", "chance", "score"):
            assert callable(getattr(cls, method)), (name, method)
    assert registry.needs(["embedding"]) == {"embeddings"}
    assert "llm" in registry.needs(["embedding", "detection"])


def test_every_explainer_a_user_may_pick_is_registered():
    assert set(EXPLAINERS) == set(config.EXPLAINERS)
    assert all(EXPLAINERS[name].name == name for name in EXPLAINERS)
