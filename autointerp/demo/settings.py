"""The demo's configuration of each stage, and the advanced ``--collect/--explain/--score KEY=VALUE`` overrides.

The stage defaults are sized for a full paper-scale run (50 test contexts per class, 40 explain
examples). The demo keeps the explain defaults but shrinks the test set and the fuzzing negatives so
that detection and fuzzing need two prompts each per latent instead of four: on 2 CPU cores the
embedded model takes ~15 s per scorer prompt, which is what decides whether the demo fits in 15
minutes. The metrics stay the same; they are noisier per latent (40 contexts instead of 100), which the
summary says.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass

from ..config import SCORERS, CollectConfig, ExplainConfig, ScoreConfig
from ..errors import AutointerpError

#: Collect: 10 quantiles x (4 explain + 2 test) activating contexts, 20 non-activating test contexts.
COLLECT = {"test_per_quantile": 2, "random_test": 20}
#: Explain: the default explainer; an answer is one sentence, so 120 tokens cap a rambling one.
EXPLAIN = {"max_tokens": 120}
#: Score: 20 + 20 detection contexts and 20 + 10 + 10 fuzzing ones, 20 per prompt.
SCORE = {"batch_size": 20, "fuzz_random": 10, "fuzz_misplaced": 10}
#: Set by the demo itself (its own options or its latent choice), so not overridable.
RESERVED = {"collect": {"tokens"}, "explain": {"latents"}, "score": {"latents", "scorers", "control", "explanations"}}
#: Arad et al.'s scores: the subject model alone (one forward pass per latent for the output score), no LLM.
OUTPUT_SIDE_SCORERS = ("input_score", "output_score")
DEFAULT_SCORERS = "detection,fuzzing,embedding," + ",".join(OUTPUT_SIDE_SCORERS)
DEFAULT_CONTROL_SCORERS = "embedding"


@dataclass
class DemoSettings:
    collect: CollectConfig
    explain: ExplainConfig
    score: ScoreConfig  # latents, scorers and control are set per score run
    scorers: list[str]
    control_scorers: list[str]


def parse_overrides(stage: str, cls: type, items: list[str]) -> dict:
    """``["n_quantiles=2", "top-k=3"]`` -> ``{"n_quantiles": 2, "top_k": 3}``, typed by ``cls``'s fields."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)} - RESERVED[stage]
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        name = key.strip().replace("-", "_")
        if not sep or not name:
            raise AutointerpError(f"--{stage} {item!r} is not KEY=VALUE.", f"e.g. --{stage} {min(fields)}=VALUE.")
        if name not in fields:
            why = (
                f"{name} is set by the demo itself"
                if name in RESERVED[stage]
                else f"{cls.__name__} has no field {name!r}"
            )
            raise AutointerpError(
                f"--{stage} {item!r}: {why}.",
                "one of: " + ", ".join(sorted(fields)),
                f"see `autointerp {stage} --help` for what each one means.",
            )
        out[name] = _convert(stage, item, text.strip(), hints[name])
    return out


def _convert(stage: str, item: str, text: str, kind: type):
    if kind is bool:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise AutointerpError(f"--{stage} {item!r}: {text!r} is not a boolean.", "true or false.")
    try:
        return kind(text)
    except ValueError:
        raise AutointerpError(
            f"--{stage} {item!r}: {text!r} is not {'an' if kind is int else 'a'} {kind.__name__}.",
            f"a value of type {kind.__name__}.",
        ) from None


def scorer_list(option: str, text: str, allow_empty: bool) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip() and s.strip() != "none"]
    unknown = [s for s in names if s not in SCORERS]
    if unknown or (not names and not allow_empty):
        raise AutointerpError(
            f"{option} {text!r}: " + (f"unknown scorer {', '.join(unknown)}." if unknown else "no scorer."),
            "a comma-separated list of: " + ", ".join(SCORERS) + (" (or none)" if allow_empty else ""),
        )
    return list(dict.fromkeys(names))


def build_settings(
    tokens: int, scorers: str, control_scorers: str, collect: list[str], explain: list[str], score: list[str]
) -> DemoSettings:
    """Every stage's configuration, validated before anything runs."""
    chosen = scorer_list("--scorers", scorers, allow_empty=False)
    controls = scorer_list("--control-scorers", control_scorers, allow_empty=True)
    collect_config = CollectConfig(
        **{**COLLECT, **parse_overrides("collect", CollectConfig, collect), "tokens": tokens}
    )
    explain_config = ExplainConfig(**{**EXPLAIN, **parse_overrides("explain", ExplainConfig, explain)})
    score_config = ScoreConfig(**{**SCORE, **parse_overrides("score", ScoreConfig, score), "scorers": ",".join(chosen)})
    return DemoSettings(collect_config, explain_config, score_config, chosen, controls)


def summary_of(settings: DemoSettings) -> str:
    """One line saying what the demo's settings are, for its progress output."""
    c, s = settings.collect, settings.score
    return (
        f"{c.tokens:,} tokens; test set {c.n_quantiles} quantiles x {c.test_per_quantile} activating + "
        f"{c.random_test} non-activating contexts; {s.batch_size} excerpts per scorer prompt; "
        f"fuzzing negatives {s.fuzz_random} random + {s.fuzz_misplaced} misplaced marks"
    )
