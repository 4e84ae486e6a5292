"""Simulation scoring (OpenAI's method): predict every token's activation from the explanation.

The scorer model reads the explanation and a few test excerpts, each as its tokens, and writes one
value 0-10 per token. The score is the Pearson correlation between predicted and true activations,
pooled over every token of every scored excerpt (spec §2.7: not a mean of per-excerpt correlations);
chance is 0; a constant prediction leaves the correlation undefined, so the score is unscored.

Where we deliberately differ from OpenAI's all-at-once simulator (shared/specs/
detection-fuzzing-simulation.md §2.4-2.6), because chat backends return logprobs of generated tokens
only, never of the prompt:
- the model writes the values ("[ANSWER]:" then "k: v v v" per excerpt, guided by a regex where the
  backend allows) instead of us reading prompt logprobs at "unknown" slots; several excerpts share a
  prompt (``simulation_batch``) so the fixed instructions are paid once per batch, not per excerpt;
- with logprobs, each value is the expected value over the candidates 0..10 among the top
  alternatives of the token that starts it (spec §2.4 step 3; ``top_logprobs`` 15, OpenAI's count);
  where the tokenizer splits "10" into "1" "0" (SmolLM2's), P(10) is P("1") times P("0") at the next
  token (``value_weights``), so a written 10 reads as about 10, not 1; without logprobs, the written
  integers are the prediction;
- an excerpt whose line is missing or has the wrong number of values is unscored with its reason,
  never read as zeros (OpenAI's and delphi's logprob-free parsers return all zeros);
- true values are |activation| (signed latents are shown by magnitude, as everywhere else), raw, not
  normalised: correlation does not depend on scale; non-activating contexts are all zeros;
- the excerpts are ``simulation_contexts`` test contexts, half activating (spread evenly over the
  quantiles, the strongest always included: ``choose_contexts``) and half non-activating, as OpenAI's
  5 top + 5 random but from our test set.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

from ..llm.base import TokenLogprob
from ..text import THINK, answer_mark, clean_token, fill, neutralise, prompt_text
from .classifier import NEGATIVE_KINDS, TestContext

SYSTEM = "score_simulation_system.txt"
USER = "score_simulation_user.txt"
VALUE = r"(?:10|[0-9])"
_MARK = answer_mark("ANSWER")
_LINE = re.compile(r"^\s*(\d+)\s*[:.]\s*(.*)$")
CANDIDATES = {str(v): v for v in range(11)}


@dataclass
class Simulated:
    """The prediction for one excerpt: values per token, or None with the reason."""

    values: list[float] | None
    reason: str | None
    from_logprobs: bool = False


def choose_contexts(contexts: list[TestContext], n: int, rng: random.Random) -> list[TestContext]:
    """n test contexts: half activating, spread over the whole activation range, half not.

    The rule: the activating contexts are grouped by quantile, strongest first. Each round takes one
    context from each of r groups, r = min(still wanted, non-empty groups), the r groups evenly spaced
    over the non-empty ones with the strongest and the weakest always among them; so 5 picks from 10
    quantiles take quantiles 9, 7, 5, 2, 0, and the top is always scored, as in OpenAI's top-and-random
    scoring (spec §2.5; there the activating half is the top 5 only: we keep the weaker quantiles too,
    so the score rewards explaining the whole range). Within a group the choice is random (``rng``)."""
    active = [c for c in contexts if c.kind not in NEGATIVE_KINDS]
    quiet = [c for c in contexts if c.kind in NEGATIVE_KINDS]
    by_quantile: dict[int, list[TestContext]] = {}
    for c in active:
        by_quantile.setdefault(c.quantile or 0, []).append(c)
    for group in by_quantile.values():
        rng.shuffle(group)
    want_active = min(len(active), (n + 1) // 2)
    picked: list[TestContext] = []
    while len(picked) < want_active:
        groups = [by_quantile[q] for q in sorted(by_quantile, reverse=True) if by_quantile[q]]
        for i in spread(len(groups), want_active - len(picked)):
            picked.append(groups[i].pop())
    rng.shuffle(quiet)
    picked += quiet[: max(0, n - len(picked))]
    rng.shuffle(picked)
    return picked


def spread(n: int, k: int) -> list[int]:
    """min(n, k) distinct indices of range(n), evenly spaced, 0 and n - 1 included when k > 1."""
    k = min(n, k)
    if k <= 1:
        return list(range(k))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def excerpt_tokens(tokens: list[str]) -> str:
    return "|".join(neutralise(clean_token(t)) for t in tokens)


def build_messages(explanation: str, batch: list[TestContext]) -> list[dict]:
    excerpts = "\n".join(f"{i + 1} ({len(c.tokens)} tokens): {excerpt_tokens(c.tokens)}" for i, c in enumerate(batch))
    return [
        {"role": "system", "content": prompt_text(SYSTEM).strip()},
        {"role": "user", "content": fill(USER, explanation=neutralise(explanation), excerpts=excerpts)},
    ]


def answer_regex(batch: list[TestContext]) -> str:
    """What a guided backend may write after "[ANSWER]:": one line of values per excerpt."""
    return "".join(f"\n{i + 1}:( {VALUE}){{{len(c.tokens)}}}" for i, c in enumerate(batch))


def parse(
    answer: str | None, lengths: list[int], logprobs: list[TokenLogprob] | None = None, prefill: str = ""
) -> list[Simulated]:
    """One ``Simulated`` per excerpt from the text after the last "[ANSWER]:" (``answer`` includes the
    prefill; ``logprobs`` cover the generated part only)."""
    n = len(lengths)
    if answer is None or not answer.strip():
        return [Simulated(None, "empty answer")] * n
    text = THINK.sub("", answer) if not logprobs else answer  # offsets must match the logprobs
    marks = list(_MARK.finditer(text))
    if not marks:
        return [Simulated(None, "no '[ANSWER]:' line")] * n
    expected = _expected_values(text, logprobs, len(prefill)) if logprobs else {}
    found: dict[int, tuple[int, str]] = {}
    offset = marks[-1].end()
    for line in text[offset:].split("\n"):
        match = _LINE.match(line)
        if match and 1 <= int(match.group(1)) <= n and int(match.group(1)) not in found:
            found[int(match.group(1))] = (offset + match.start(2), match.group(2))
        offset += len(line) + 1
    out = []
    for k, length in enumerate(lengths, start=1):
        if k not in found:
            out.append(Simulated(None, f"no line for excerpt {k}"))
            continue
        start, body = found[k]
        values = [(start + m.start(), m.group()) for m in re.finditer(r"\S+", body)]
        if len(values) != length:
            out.append(Simulated(None, f"excerpt {k}: {len(values)} values for {length} tokens"))
            continue
        if any(v not in CANDIDATES for _, v in values):
            out.append(Simulated(None, f"excerpt {k}: not integers 0-10: {body[:60]!r}"))
            continue
        if expected and all(pos in expected for pos, _ in values):
            out.append(Simulated([expected[pos] for pos, _ in values], None, True))
        else:
            out.append(Simulated([float(CANDIDATES[v]) for _, v in values], None))
    return out


def _expected_values(text: str, logprobs: list[TokenLogprob], start: int) -> dict[int, float]:
    """Text offset where a value's first token begins -> the expected value over 0..10 of that token's
    top alternatives (``value_weights``; normalised over the candidates; values with none are left out).
    The "0" that continues a "1" into "10" is not the start of a value."""
    out, offset = {}, start
    for i, step in enumerate(logprobs):
        piece = step.token
        stripped = piece.lstrip()
        begin = offset + len(piece) - len(stripped)
        offset += len(piece)
        if not stripped or not stripped[0].isdigit() or (begin > 0 and text[begin - 1].isdigit()):
            continue
        weights = value_weights(step, logprobs[i + 1] if i + 1 < len(logprobs) else None)
        total = sum(weights.values())
        if total > 0:
            out[begin] = sum(v * w for v, w in weights.items()) / total
    return out


def value_weights(step: TokenLogprob, following: TokenLogprob | None) -> dict[int, float]:
    """Probability of each value 0..10 at a value's first token, from its top alternatives.

    A tokenizer that splits "10" into "1" "0" offers no "10" alternative: there P(10) is read from both
    tokens, P("1") here times P("0") at the next position, and P(1) is P("1") times the rest. The next
    position's alternatives are known only when the model wrote "1" here (they are conditioned on it);
    where it wrote another digit, the "1" alternative is counted as 1 (whether a "0" would have followed
    is not in the answer), which can only pull a value towards 1, never read a written 10 as 1.
    """
    weights: dict[int, float] = {}
    for token, lp in step.top.items():
        if token.strip() in CANDIDATES:
            value = CANDIDATES[token.strip()]
            weights[value] = weights.get(value, 0.0) + math.exp(lp)
    if step.token.strip() == "1" and following is not None and 1 in weights:
        zero = following.top.get("0", following.logprob if following.token == "0" else -math.inf)
        p_zero = math.exp(zero)
        weights[10] = weights.get(10, 0.0) + weights[1] * p_zero
        weights[1] *= 1 - p_zero
    return weights


def true_values(context: TestContext) -> list[float]:
    return [abs(a) for a in context.activations] if context.kind != "random" else [0.0] * len(context.tokens)


def fixed_text() -> str:
    return prompt_text(SYSTEM).strip()
