"""``make_plan``: what an explain and score run over a collect database will send, counted from the real
prompts before anything is sent."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ExplainConfig, ScoreConfig
from ..errors import AutointerpError
from ..explain.explainers import EXPLAINERS
from ..explain.stage import select_latents
from .count import Counts, count
from .requests import explain_calls, known_explanations, planned_scorers, score_calls
from .tokenizer import PromptTokenizer

STAGES = ("explain", "score")
#: Placeholder explanation length (tokens) where the database holds no explanation to measure.
DEFAULT_EXPLANATION_TOKENS = 20


@dataclass
class Plan:
    """The counts of a planned run and what they assume."""

    db: str
    stages: list[str]
    tokenizer: str
    tokenizer_exact: bool
    latents: int
    counts: Counts
    notes: list[str] = field(default_factory=list)

    def to_dict(self, per_latent: bool = False) -> dict:
        out = {
            "db": self.db,
            "stages": self.stages,
            "tokenizer": self.tokenizer,
            "tokenizer_exact": self.tokenizer_exact,
            "latents": self.latents,
            "by_purpose": {k: t.to_dict() for k, t in self.counts.by_purpose.items()},
            "total": self.counts.total.to_dict(),
            "per_latent_mean": per_latent_mean(self.counts, self.latents),
            "notes": self.notes,
        }
        if per_latent:
            out["per_latent"] = {str(k): t.to_dict() for k, t in sorted(self.counts.by_latent.items())}
        return out


def per_latent_mean(counts: Counts, latents: int) -> dict:
    """The total's figures divided by the planned latents."""
    return {k: v / latents if latents else 0.0 for k, v in counts.total.to_dict().items()}


def check_stages(stages: list[str]) -> list[str]:
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise AutointerpError(f"--stages {','.join(stages)!r}: unknown or none.", "explain, score or explain,score.")
    return stages


def make_plan(
    con,
    db: str,
    stages: list[str],
    explain_config: ExplainConfig,
    score_config: ScoreConfig,
    tokenizer: PromptTokenizer,
    *,
    latents: dict[str, list[int]] | None = None,
    explanation_tokens: int | None = None,
) -> Plan:
    """Count the requests of ``stages`` over the latents the configs select (``latents``: the latents of
    each stage instead, as a finished run processed them). Every selected latent is counted, also those a
    resumed run would skip. ``explanation_tokens``: the length of the placeholder explanation scored
    where a latent has none yet (default: the mean of the database's explanations, else 20)."""
    check_stages(stages)
    notes = []
    if not tokenizer.exact:
        notes.append(f"prompt tokens are approximate ({tokenizer.name}): no tokenizer of the model on this machine")
    counts = Counts()
    n_latents = 0
    if latents is None:
        selected, _ = select_latents(con, explain_config)  # the explain stage's own selection and errors
        latents = {"explain": selected, "score": selected}
    if "explain" in stages:
        n_latents = max(n_latents, len(latents["explain"]))
        if needs_output_side(explain_config.explainer):
            notes.append(
                f"explain: not counted: the {explain_config.explainer} explainer's prompts hold the latent's "
                "output side (logit lens, token change), which the plan does not compute"
            )
        else:
            count(explain_calls(con, explain_config, latents["explain"]), tokenizer, counts)
    if "score" in stages:
        n_latents = max(n_latents, len(latents["score"]))
        explanations = known_explanations(con, score_config)
        missing = [lat for lat in latents["score"] if lat not in explanations]
        placeholder = ""
        if missing and score_config.control != "empty":
            n = explanation_tokens or mean_explanation_tokens(explanations.values(), tokenizer)
            # about n tokens: " word" is one token in common BPE vocabularies, "word" 4 characters
            placeholder = " ".join(["word"] * n) if tokenizer.hf is not None else "word" * n
            notes.append(
                f"{len(missing)} latent(s) have no explanation yet: scored with a placeholder of {n} tokens"
                + (" (given)" if explanation_tokens else " (the mean of the database's explanations, or 20 if none)")
            )
        if score_config.control == "shuffled":
            notes.append("--control shuffled: counted with each latent's own explanation (lengths alike)")
        count(score_calls(con, score_config, latents["score"], explanations, placeholder), tokenizer, counts)
        for name, note in planned_scorers(score_config)[1].items():
            notes.append(f"{name}: {note}")
    notes.append("every selected latent is counted; a resumed run skips finished ones and reuses logged answers")
    return Plan(db, stages, tokenizer.name, tokenizer.exact, n_latents, counts, notes)


def needs_output_side(explainer: str) -> bool:
    """Whether an explainer is shown a latent's output side (its ``lens`` or ``token_change`` flag)."""
    entry = EXPLAINERS[explainer]
    return bool(getattr(entry, "lens", False) or getattr(entry, "token_change", False))


def mean_explanation_tokens(explanations, tokenizer: PromptTokenizer) -> int:
    """Mean tokens of ``explanations`` (their bare text), or ``DEFAULT_EXPLANATION_TOKENS`` when none."""
    texts = list(explanations)
    if not texts:
        return DEFAULT_EXPLANATION_TOKENS
    if tokenizer.hf is None:
        return max(1, round(sum(len(t) for t in texts) / len(texts) / tokenizer.per_token))
    return max(1, round(sum(len(tokenizer.hf(t, add_special_tokens=False).input_ids) for t in texts) / len(texts)))
