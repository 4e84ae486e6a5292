"""The steering core of intervention scoring, on the embedded model and SAE.

KL values found by the search are recomputed here with a plain hook and a right-padded batch, an
implementation independent of the module's left padding and position ids.
"""

from __future__ import annotations

import math

import pytest
import torch

from autointerp.errors import AutointerpError
from autointerp.models.dictionaries import LinearDictionary
from autointerp.score import intervention as iv

LATENTS = (7, 1000)
TARGETS = (0.5, 1.5)


@pytest.fixture(scope="module")
def subject():
    from autointerp.models.subject import load_subject_model

    return load_subject_model("embedded", "model.layers.14", device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def sae():
    from autointerp.models.dictionaries import load_dictionary
    from autointerp.models.embedded import DEFAULT_SAE_DIR

    return load_dictionary(DEFAULT_SAE_DIR)


@pytest.fixture(scope="module")
def prompts():
    return iv.neutral_prompts()


@torch.inference_mode()
def reference_kl(model, tokenizer, hookpoint, direction, prompts, scale) -> float:
    """Mean KL(clean || steered) at each prompt's last token: right padding, a bare forward hook."""
    rows = [tokenizer(p).input_ids for p in prompts]
    width = max(map(len, rows))
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    last = torch.tensor([len(r) - 1 for r in rows])

    def logprobs():
        logits = model(input_ids=ids, attention_mask=mask).logits
        return torch.log_softmax(logits[torch.arange(len(rows)), last].double(), -1)

    clean = logprobs()
    module = dict(model.named_modules())[hookpoint]
    handle = module.register_forward_hook(lambda m, i, o: o + scale * direction)
    try:
        steered = logprobs()
    finally:
        handle.remove()
    return float((clean.exp() * (clean - steered)).sum(-1).mean())


def test_neutral_prompts_file():
    prompts = iv.neutral_prompts()
    assert 8 <= len(prompts) <= 20
    assert all(p and p == p.strip() for p in prompts)


def test_transcoder_without_output_module_is_refused():
    d_in, d_sae = 8, 4
    transcoder = LinearDictionary(
        W_enc=torch.randn(d_in, d_sae),
        b_enc=torch.zeros(d_sae),
        W_dec=torch.randn(d_sae, d_in),
        b_dec=torch.zeros(d_in),
        activation="relu",
        hookpoint="model.layers.3.mlp",
        reads="input",
    )
    with pytest.raises(AutointerpError, match="writes"):
        iv.steering_target(transcoder, 0)
    transcoder.hookpoint_out = "model.layers.3.mlp"
    assert iv.steering_target(transcoder, 1)[0] == "model.layers.3.mlp"


@pytest.mark.slow
@pytest.mark.parametrize("latent", LATENTS)
def test_scale_reaches_target_kl(subject, sae, prompts, latent):
    hookpoint, direction = iv.steering_target(sae, latent, subject)
    assert hookpoint == "model.layers.14"
    for target in TARGETS:
        found = iv.scale_for_target_kl(subject, subject.tokenizer, hookpoint, direction, prompts, target)
        assert found.reached and found.scale > 0
        assert abs(found.kl - target) <= found.tolerance == pytest.approx(0.1 * target)
        again = reference_kl(subject.model, subject.tokenizer, hookpoint, direction, prompts, found.scale)
        assert again == pytest.approx(found.kl, abs=1e-3)
        assert abs(again - target) <= found.tolerance + 1e-3
    # the other side of the latent: a negative scale, same guarantee
    other = iv.scale_for_target_kl(subject, subject.tokenizer, hookpoint, direction, prompts, 1.0, sign=-1)
    assert other.reached and other.scale < 0 and abs(other.kl - 1.0) <= other.tolerance
    assert iv.kl_for_scale(subject, subject.tokenizer, hookpoint, direction, prompts, other.scale) == pytest.approx(
        other.kl, abs=1e-6
    )


@pytest.mark.slow
def test_unreachable_target_is_flagged(subject, sae, prompts):
    hookpoint, direction = iv.steering_target(sae, LATENTS[0], subject)
    with pytest.raises(iv.UnreachableKL, match="max_scale") as caught:
        iv.scale_for_target_kl(subject, subject.tokenizer, hookpoint, direction, prompts, 1.5, max_scale=5.0)
    calibration = caught.value.calibration
    assert not calibration.reached and math.isnan(calibration.scale) and math.isnan(calibration.kl)
    assert calibration.closest[0] == 5.0 and calibration.closest[1] < 0.1
    with pytest.raises(AutointerpError, match="finite"):  # a NaN scale cannot be used by mistake
        with iv.steering(subject, hookpoint, direction, calibration.scale):
            pass
    # beyond what any scale gives: KL saturates as the direction swamps the residual stream
    saturated = iv.scale_for_target_kl(
        subject, subject.tokenizer, hookpoint, direction, prompts, 200.0, tolerance=1.0, strict=False
    )
    assert not saturated.reached and "saturates" in saturated.reason
    assert math.isnan(saturated.scale)


@pytest.mark.slow
def test_completions_clean_steered_and_hook_removal(subject, sae, prompts):
    hookpoint, direction = iv.steering_target(sae, LATENTS[0], subject)
    few = prompts[:4]
    kwargs = dict(max_new_tokens=6, seed=3, temperature=1.0)
    clean = iv.generate_completions(subject, subject.tokenizer, few, **kwargs)
    zero = iv.generate_completions(subject, subject.tokenizer, few, direction=direction, scale=0.0, **kwargs)
    steered = iv.generate_completions(subject, subject.tokenizer, few, direction=direction, scale=300.0, **kwargs)
    assert len(clean) == len(few) and all(isinstance(t, str) and t for t in clean)
    assert zero == clean  # same seed, a zero vector added: identical
    assert sum(s != c for s, c in zip(steered, clean, strict=True)) >= 3

    # the hook is gone afterwards, also when the block raised
    module = dict(subject.model.named_modules())[hookpoint]
    hooks = len(module._forward_hooks)
    ids = torch.tensor([subject.tokenizer(few[0]).input_ids])
    with torch.inference_mode():
        before = subject.model(input_ids=ids).logits
        with iv.steering(subject, hookpoint, direction, 300.0):
            during = subject.model(input_ids=ids).logits
        with pytest.raises(RuntimeError):
            with iv.steering(subject, hookpoint, direction, 300.0):
                raise RuntimeError("inside")
        after = subject.model(input_ids=ids).logits
    assert not torch.equal(during, before)
    assert torch.equal(after, before)
    assert len(module._forward_hooks) == hooks


CLEAN = [
    " we took the train to the city and visited a museum.",
    " the weather is going to change soon.",
    " she finished her homework and went to bed.",
    " the meeting was moved to Thursday afternoon.",
]
STEERED = [
    " we baked bread with flour, butter and a pinch of salt.",
    " the soup needs more garlic and fresh basil.",
    " she stirred the sauce and put the pasta in boiling water.",
    " the recipe calls for two eggs and a cup of sugar.",
]


@pytest.mark.slow
def test_surprisal_score_prefers_the_matching_explanation(subject):
    tokenizer = subject.tokenizer
    match = iv.surprisal_score(subject, tokenizer, "cooking and recipes", CLEAN, STEERED)
    other = iv.surprisal_score(subject, tokenizer, "astronomy and planets", CLEAN, STEERED)
    assert match["score"] > 0.5 and match["score"] > other["score"] + 1.0
    assert match["n_prompts"] == 4 and match["unit"] == "nats" and match["sem"] > 0
    assert match["score"] == pytest.approx(sum(match["per_prompt"]) / 4)
    assert match["per_prompt"] == pytest.approx(
        [s - c for s, c in zip(match["logp_steered"], match["logp_clean"], strict=True)]
    )
    # swapping clean and steered flips the sign (chance level 0 lies between)
    swapped = iv.surprisal_score(subject, tokenizer, "cooking and recipes", STEERED, CLEAN)
    assert swapped["score"] == pytest.approx(-match["score"], abs=1e-6)

    # the batched, right-padded log-probability equals a token-by-token sum on one unpadded sequence
    context, scored = iv.render_surprisal(STEERED[0], "cooking and recipes")
    assert context.endswith("about:") and scored == " cooking and recipes"
    ids = tokenizer(context).input_ids + tokenizer(scored, add_special_tokens=False).input_ids
    n = len(tokenizer(scored, add_special_tokens=False).input_ids)
    with torch.inference_mode():
        logprobs = torch.log_softmax(subject.model(input_ids=torch.tensor([ids])).logits[0].double(), -1)
    expected = sum(float(logprobs[j - 1, ids[j]]) for j in range(len(ids) - n, len(ids)))
    assert match["logp_steered"][0] == pytest.approx(expected, abs=1e-3)


@pytest.mark.slow
def test_batched_greedy_completions_match_transformers_generate(subject):
    """Left padding and position ids: each prompt's greedy continuation, batched with prompts of other
    lengths, is the one transformers' own generate gives it alone."""
    few = ["I think that", "Here is what happened when we", "Last week, we went"]
    batched = iv.generate_completions(subject, subject.tokenizer, few, max_new_tokens=6, temperature=0)
    with torch.inference_mode():
        for prompt, text in zip(few, batched, strict=True):
            ids = torch.tensor([subject.tokenizer(prompt).input_ids])
            out = subject.model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False
            )
            assert text == subject.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


@pytest.mark.slow
def test_clean_and_steered_in_one_batch_equal_two_calls(subject, sae, prompts):
    """One batch of clean (steered by 0) and steered rows sharing noise gives what two calls with one seed
    give, sampled and greedy."""
    hookpoint, direction = iv.steering_target(sae, LATENTS[0], subject)
    few = prompts[:3]
    for temperature in (1.0, 0.0):
        kwargs = dict(max_new_tokens=6, seed=5, temperature=temperature)
        clean, steered = iv.generate_clean_and_steered(
            subject, subject.tokenizer, few, direction, 60.0, hookpoint, **kwargs
        )
        assert clean == iv.generate_completions(subject, subject.tokenizer, few, **kwargs)
        assert steered == iv.generate_completions(
            subject, subject.tokenizer, few, direction=direction, scale=60.0, hookpoint=hookpoint, **kwargs
        )
    assert clean != steered
    with pytest.raises(AutointerpError, match="noise_rows"):
        iv.generate_completions(subject, subject.tokenizer, few, noise_rows=2)


@pytest.mark.slow
def test_padded_batch_of_passages_equals_one_at_a_time(subject):
    passages = ["a", "The quick brown fox jumps over the lazy dog and runs away", "Hello\n", "x y z w"]
    batched = iv.explanation_logprobs(subject, subject.tokenizer, "cooking and recipes", passages)
    alone = [
        float(iv.explanation_logprobs(subject, subject.tokenizer, "cooking and recipes", [p])[0]) for p in passages
    ]
    assert batched.tolist() == pytest.approx(alone, abs=1e-3)
