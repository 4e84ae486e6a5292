"""The refinement request: the explainer's own conversation, its current best answer, and what that
explanation got wrong on the validate split (a pure function; ``explain.select`` sends it).

The original messages come first, unchanged, so a prefix cache serves them again and the explainer still
sees its explain-set examples; the false positives and negatives follow as plain numbered excerpts,
neutralised like every excerpt (corpus text can fake neither a mark nor the answer line). Earlier
revisions that did no better are listed too, which also makes every round's request distinct (an
unchanged request would be answered from the call log with the same rejected revision).
"""

from __future__ import annotations

from ..text import fill, neutralise

#: The prompt file of the refinement request (in the explanation identity when --refine is used).
REFINE_PROMPT = "explain_refine_user.txt"
#: Most false positives and most false negatives shown in one refinement request.
SHOWN = 10


def numbered(texts: list[str], limit: int = SHOWN) -> str:
    """Up to ``limit`` excerpts, one numbered line each; "(none)" when there are none."""
    if not texts:
        return "(none)"
    return "\n".join(f"{i + 1} {neutralise(t)}" for i, t in enumerate(texts[:limit]))


def refine_messages(
    messages: list[dict],
    answer: str,
    explanation: str,
    measure: str,
    score: float,
    false_positives: list[str],
    false_negatives: list[str],
    rejected: list[tuple[str, float | None]],
) -> list[dict]:
    """``messages`` (the explainer's request), the assistant turn ``answer`` that gave ``explanation``,
    then a user turn asking for a revision in view of its validation ``score`` (a ``measure``) and the
    excerpts it got wrong; ``rejected`` lists earlier revisions (text, validation score) not kept."""
    earlier = [f"- {neutralise(text)} ({'unscored' if s is None else f'{s:.2f}'})" for text, s in rejected]
    user = fill(
        REFINE_PROMPT,
        explanation=neutralise(explanation),
        measure=measure,
        score=f"{score:.2f}",
        false_positives=numbered(false_positives),
        false_negatives=numbered(false_negatives),
        rejected="\n".join(earlier) if earlier else "(none)",
    )
    return [*messages, {"role": "assistant", "content": answer}, {"role": "user", "content": user}]
