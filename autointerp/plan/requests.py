"""The requests a run would send, built by the stages' own code without calling the LLM: the explain
stage's latent selection, examples and messages, and each scorer's ``requests`` over the latent's test
set (``score.base.Request``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ..config import ExplainConfig, ScoreConfig
from ..errors import AutointerpError
from ..explain.prompt import build_messages
from ..explain.stage import explain_options, read_examples
from ..llm.base import Backend, GenerateOptions
from ..models.special import collect_special_ids
from ..score import registry
from ..score.base import ScoreContext
from ..score.classifier import contexts_for
from ..score.stage import read_test_sets, score_options, select_explanations
from ..store.runs import latest_collect_config

#: Latents whose data is read from the database at once.
CHUNK = 256


@dataclass
class PlannedCall:
    """One request the run would send."""

    purpose: str
    """'explain' or the scorer's name (as ``llm_calls.purpose`` records it)."""
    latent: int
    messages: list[dict]
    options: GenerateOptions


class _PlanningQueue:
    """Stands in for the run's LLM queue where scorers are built only to list their requests: it names
    the model (scorers store it) and answers nothing."""

    def __init__(self, model: str):
        self.backend = Backend()
        self.backend.model = model


def explain_calls(con, config: ExplainConfig, latents: list[int]) -> Iterator[PlannedCall]:
    """The explain stage's one request per latent."""
    options = explain_options(config)
    special = collect_special_ids(latest_collect_config(con))
    for start in range(0, len(latents), CHUNK):
        chunk = latents[start : start + CHUNK]
        examples, maxima = read_examples(con, chunk, special)
        for latent in chunk:
            yield PlannedCall("explain", latent, build_messages(examples[latent], maxima[latent], config), options)


def known_explanations(con, config: ScoreConfig) -> dict[int, str]:
    """latent -> the explanation the score stage would score now (none yet: {})."""
    try:
        return {lat: text for lat, (_, text) in select_explanations(con, config).items()}
    except AutointerpError:  # nothing explained yet: every latent gets the placeholder
        return {}


def planned_scorers(config: ScoreConfig) -> tuple[list[str], dict[str, str]]:
    """The scorers whose requests can be listed, and a note for each of the others."""
    listed, notes = [], {}
    for name in registry.scorer_names(config.scorer_list()):
        cls = registry.scorer_class(name)
        if "llm" not in cls.needs:
            notes[name] = "calls no LLM (nothing to count)"
        elif not hasattr(cls, "requests"):
            notes[name] = "not counted: its prompts hold the subject model's steered text, known only when it runs"
        else:
            listed.append(name)
    return listed, notes


def score_calls(
    con, config: ScoreConfig, latents: list[int], explanations: dict[int, str], placeholder: str
) -> Iterator[PlannedCall]:
    """Every request of the listable scorers over ``latents``, with the latent's explanation where known
    and ``placeholder`` where not (``config.control == 'empty'``: the empty explanation)."""
    names, _ = planned_scorers(config)
    context = ScoreContext(config, con, _PlanningQueue(""), score_options(config), None, "", {})  # type: ignore[arg-type]
    scorers = {name: registry.make_scorer(name, context) for name in names}
    special = collect_special_ids(latest_collect_config(con))
    for start in range(0, len(latents), CHUNK):
        chunk = latents[start : start + CHUNK]
        tests = read_test_sets(con, chunk, special)
        for latent in chunk:
            explanation = "" if config.control == "empty" else explanations.get(latent, placeholder)
            for name, scorer in scorers.items():
                for request in scorer.requests(latent, explanation, contexts_for(scorer, tests[latent])):
                    yield PlannedCall(name, latent, request.messages, request.options)
