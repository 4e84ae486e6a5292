"""delphi's surprisal score: how much likelier a scorer LM finds the explanation after steered text than
after clean text (spec section B, PR #151)."""

from __future__ import annotations

import math
import string
from collections.abc import Sequence

import torch

from ...errors import AutointerpError
from ...models.steering import model_device, torch_module
from ...text import prompt_text
from .inputs import position_ids

SURPRISAL_TEMPLATE = "intervention_surprisal.txt"


def render_surprisal(passage: str, explanation: str, template: str | None = None) -> tuple[str, str]:
    """(context, scored text) of the surprisal template: everything before ``$explanation`` is the
    context; the explanation and the rest of the template (whitespace before it included, so that
    " cooking" is one natural token) is scored."""
    text = template if template is not None else prompt_text(SURPRISAL_TEMPLATE)
    head, mark, tail = text.rstrip("\n").partition("$explanation")
    if not mark:
        raise AutointerpError(
            "The surprisal template has no $explanation placeholder.",
            "a template ending with the explanation, e.g. 'The text above is about: $explanation'.",
        )
    context = string.Template(head).substitute(passage=passage)
    stripped = context.rstrip()
    return stripped, context[len(stripped) :] + explanation.strip() + string.Template(tail).substitute()


@torch.inference_mode()
def explanation_logprobs(
    scorer_model,
    tokenizer,
    explanation: str,
    passages: Sequence[str],
    template: str | None = None,
    batch_size: int = 16,
) -> torch.Tensor:
    """log p(explanation | passage) in nats under the scorer LM, for each passage: the sum over the
    scored tokens (``render_surprisal``), each conditioned on everything before it. Context and scored
    text are tokenized apart (special tokens, e.g. a BOS, on the context only) and scored as one
    sequence. Sequences are left-padded, so every scored span ends at the last position and only the
    logits of the last (longest span + 1) positions are computed: the vocabulary projection and its
    softmax cost a few positions per passage instead of all of them."""
    if not explanation.strip():
        # the empty explanation (the empty control) says nothing, so nothing is scored: log p = 0 after
        # every passage. Scoring the template's leftover whitespace instead would measure how expected a
        # space is after steered text, a fluency cue the control exists to exclude.
        return torch.zeros(len(passages), dtype=torch.float64)
    net = torch_module(scorer_model)
    device = model_device(net)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    rows: list[tuple[list[int], int]] = []
    for passage in passages:
        context, scored = render_surprisal(passage, explanation, template)
        ctx = tokenizer(context).input_ids
        target = tokenizer(scored, add_special_tokens=False).input_ids
        if not target:
            raise AutointerpError("The explanation tokenizes to no token.", "a non-empty explanation.")
        rows.append((ctx + target, len(target)))
    values = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        width = max(len(r) for r, _ in chunk)
        keep = max(n for _, n in chunk) + 1
        ids = torch.tensor([[pad] * (width - len(r)) + r for r, _ in chunk], device=device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r, _ in chunk], device=device)
        logits = net(
            input_ids=ids, attention_mask=mask, position_ids=position_ids(mask), use_cache=False, logits_to_keep=keep
        ).logits  # positions width - keep .. width - 1
        logprobs = torch.log_softmax(logits.double(), -1)
        for i, (_, n) in enumerate(chunk):
            # the scored tokens are the last n; each is predicted by the logits one position earlier
            values.append(logprobs[i, keep - 1 - n : keep - 1].gather(-1, ids[i, width - n :, None]).sum())
    return torch.stack(values).cpu()


def surprisal_score(
    scorer_model,
    tokenizer,
    explanation: str,
    clean_completions: Sequence[str],
    steered_completions: Sequence[str],
    prompts: Sequence[str] | None = None,
    template: str | None = None,
) -> dict:
    """How much more a scorer LM expects ``explanation`` after steered text than after clean text:
    the mean over prompts of log p(explanation | steered passage) - log p(explanation | clean passage),
    in nats (delphi's intervention score, surprisal_clean - surprisal_steered). A passage is the
    completion, preceded by its prompt when ``prompts`` is given; the framing is
    ``prompts/intervention_surprisal.txt``.

    Chance level is 0: when the steering has nothing to do with the explanation, clean and steered
    passages are equally likely to evoke it. Positive: the explanation predicts the steered text.
    Returns ``score``, ``sem`` (standard error over prompts; NaN for one prompt), ``per_prompt``,
    ``logp_clean``, ``logp_steered`` (lists, nats), ``n_prompts`` and ``unit``.
    """
    if len(clean_completions) != len(steered_completions) or not clean_completions:
        raise AutointerpError(
            f"{len(clean_completions)} clean and {len(steered_completions)} steered completions.",
            "the same, non-zero number of each (one pair per prompt).",
        )
    if prompts is not None and len(prompts) != len(clean_completions):
        raise AutointerpError(
            f"{len(prompts)} prompts for {len(clean_completions)} completions.", "one prompt per completion pair."
        )
    heads = list(prompts) if prompts is not None else [""] * len(clean_completions)
    passages = [h + c for h, c in zip(heads, clean_completions, strict=True)] + [
        h + c for h, c in zip(heads, steered_completions, strict=True)
    ]
    logps = explanation_logprobs(scorer_model, tokenizer, explanation, passages, template)
    n = len(clean_completions)
    clean, steered = logps[:n], logps[n:]
    delta = steered - clean
    sem = float(delta.std(unbiased=True) / math.sqrt(n)) if n > 1 else math.nan
    return {
        "score": float(delta.mean()),
        "sem": sem,
        "per_prompt": delta.tolist(),
        "logp_clean": clean.tolist(),
        "logp_steered": steered.tolist(),
        "n_prompts": n,
        "unit": "nats",
    }
