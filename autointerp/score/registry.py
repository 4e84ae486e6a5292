"""The table of scorers: name -> the class that builds one from a ``ScoreContext``.

Adding a scorer is one new module under ``score/scorers/`` (a class following ``score.base.Scorer``)
and one line here (its name must also be one of ``config.SCORERS``, the names a user may pick, or
belong to a group). Classes are imported only when chosen, so ``import autointerp.score`` loads no
torch or embedding model.
"""

from __future__ import annotations

import importlib

from .base import ScoreContext, Scorer

SCORERS: dict[str, str] = {
    "detection": "autointerp.score.scorers.classifier:DetectionScorer",
    "fuzzing": "autointerp.score.scorers.classifier:FuzzingScorer",
    "detection_hard": "autointerp.score.scorers.classifier:DetectionHardScorer",
    "embedding": "autointerp.score.scorers.embedding:EmbeddingScorer",
    "simulation": "autointerp.score.scorers.simulation:SimulationScorer",
    "intervention": "autointerp.score.scorers.intervention:InterventionScorer",
    "intervention_choice": "autointerp.score.scorers.intervention_choice:InterventionChoiceScorer",
    "intervention_surprisal": "autointerp.score.scorers.intervention_surprisal:InterventionSurprisalScorer",
    "input_score": "autointerp.score.scorers.input_output:InputScorer",
    "output_score": "autointerp.score.scorers.input_output:OutputScorer",
    "output_choice": "autointerp.score.scorers.output_choice:OutputChoiceScorer",
}

#: A name a user picks that runs several scorers (they share one steering of each latent).
GROUPS: dict[str, tuple[str, ...]] = {
    "intervention": ("intervention", "intervention_choice", "intervention_surprisal"),
}


def scorer_names(chosen: list[str]) -> list[str]:
    """The scorers the names a user chose run, groups expanded, in order, each once."""
    names: list[str] = []
    for name in chosen:
        for scorer in GROUPS.get(name, (name,)):
            if scorer not in names:
                names.append(scorer)
    return names


def scorer_class(name: str) -> type:
    """The class of the scorer ``name`` (imported now)."""
    module, cls = SCORERS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def needs(chosen: list[str]) -> set[str]:
    """What the scorers the names run need together (the stage opens an LLM backend only for "llm")."""
    return {need for name in scorer_names(chosen) for need in scorer_class(name).needs}


def make_scorer(name: str, context: ScoreContext) -> Scorer:
    """Build the scorer ``name`` for one run."""
    return scorer_class(name)(context)
