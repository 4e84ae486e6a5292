"""The output side of latents for Arad et al.'s scores (section A of
shared/specs/intervention-and-output-scores.md), given a loaded subject model and dictionary.

Per latent: its representative tokens R_i, the top ``REPRESENTATIVE_TOKENS`` of the logit lens of its
decoder row (``models.logit_lens``, computed here from the loaded model and dictionary), and its output
score: one forward pass on ``PROMPT`` where the module the latent writes to gets ``alpha * m * d_i``
added at the last position only, ``m`` the largest activation of any latent of the dictionary at that
position. The same for a random direction as long as d_i (seeded by the latent and --seed), the chance
level. ``compute`` takes a block of latents: their edits, and their random directions', go through one
batched forward of the same prompt (one forward pass per latent in the spec).

Where we differ from the spec:
- The spec edits the latent in SAE space with the error term: ``f[T-1, i] += alpha * m``, then
  ``h' = dec(f) + (h - dec(enc(h)))``. For a linear decoder ``dec(f) = f W_dec + b_dec`` (plus a
  transcoder's skip term, which reads the unchanged input) this is exactly ``h + alpha * m * W_dec[i]``
  at the last position and ``h`` elsewhere, so we add the decoder row (``models.steering.
  adding_at_last_position``) and skip the SAE round trip and its float error.
- The spec hooks a residual SAE at a block output. A transcoder writes to its output module
  (``hookpoint_out``) and MLP neurons to the down projection's output: the edit goes there, and ``m`` is
  the largest activation of the dictionary encoding the vector it reads (the module's input). Where the
  lens does not apply (a module whose output is normalised before the residual stream) neither score is
  computed, and the reason is stored.
- With planted latents appended to a dictionary, ``m`` is the largest of the dictionary's own latents
  (planted latents have no decoder row and never enter the edit).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ...errors import AutointerpError
from ...models.logit_lens import logit_lens, reaches_residual, unembedding_of
from ...models.steering import adding_at_last_position, steering_target
from .metrics import output_terms, random_directions

#: The neutral prompt of the output score (the spec's; tokenized as the tokenizer does, BOS included when
#: it adds one).
PROMPT = "From my experience,"
#: |R_i|: representative tokens per latent (the spec's ``--logit_lens_top_k 20``).
REPRESENTATIVE_TOKENS = 20


@dataclass
class OutputSide:
    """One latent's representative tokens and output score, with those of its random direction of the
    same norm; ``reason`` says why neither score applies, ``output_reason`` why the output score does not."""

    latent: int
    reason: str | None = None
    output_reason: str | None = None
    representative: list[int] = field(default_factory=list)
    representative_tokens: list[str] = field(default_factory=list)
    random_representative: list[int] = field(default_factory=list)
    output: dict = field(default_factory=dict)  # score, rank_term, prob_term
    random_output: dict = field(default_factory=dict)
    vocabulary: int = 0
    strength: float = 0.0  # m, the largest latent activation at the prompt's last position


class OutputSides:
    """``compute(latents)``: the ``OutputSide`` of each latent of ``dictionary`` on ``subject`` (a
    ``SubjectModel``), all of them (and their random directions) in one batched forward pass. ``alpha``
    scales the edit, ``seed`` the random directions."""

    def __init__(self, subject, dictionary, alpha: float, seed: int):
        self.subject, self.dictionary, self.alpha, self.seed = subject, dictionary, alpha, seed
        self.reason: str | None = None
        self.output_reason: str | None = None
        self.strength = 0.0
        self.forward_passes = 0
        dictionary.to(subject.device, torch.float32)
        try:
            self.target, _ = steering_target(dictionary, 0, subject)
        except AutointerpError as exc:
            self.reason = exc.what
            return
        unreached = reaches_residual(subject, self.target)
        if unreached:
            self.reason = f"the logit lens does not apply where the dictionary writes: {unreached}"
            return
        self.unembedding = unembedding_of(subject)
        self.prompt_ids = subject.tokenizer(PROMPT, return_tensors="pt").input_ids.to(subject.device)
        self.strength = largest_activation(subject, dictionary, self.prompt_ids)
        if not self.strength > 0:
            self.output_reason = (
                f"no latent of the dictionary is active at the last token of {PROMPT!r} (largest activation "
                f"{self.strength:g}), so the edit alpha * m adds nothing"
            )

    @torch.inference_mode()
    def compute(self, latents: list[int]) -> dict[int, OutputSide]:
        if self.reason:
            return {latent: OutputSide(latent, self.reason) for latent in latents}
        directions = self.dictionary.decoder_directions()
        rows = directions[torch.tensor(latents, device=directions.device)].float()
        randoms = random_directions(rows.cpu(), latents, self.seed).to(rows.device)
        representative, terms = self.score_directions(torch.cat([rows, randoms]))
        tokenizer, n, out = self.subject.tokenizer, len(latents), {}
        for i, latent in enumerate(latents):
            side = OutputSide(
                latent,
                output_reason=self.output_reason,
                representative=representative[i].tolist(),
                representative_tokens=[tokenizer.decode([t]) for t in representative[i].tolist()],
                random_representative=representative[n + i].tolist(),
                vocabulary=self.unembedding.vocabulary,
                strength=self.strength,
            )
            if terms is not None:
                side.output, side.random_output = _terms(terms, i), _terms(terms, n + i)
            out[latent] = side
        return out

    @torch.inference_mode()
    def score_directions(self, directions: torch.Tensor) -> tuple[torch.Tensor, tuple | None]:
        """(representative token ids [n, k], (rank_term [n], prob_term [n]) or None when the output score
        does not apply) of decoder ``directions`` [n, d_out], in one lens chunk and one batched forward."""
        lens = logit_lens(directions, self.unembedding, k=REPRESENTATIVE_TOKENS, chunk_size=len(directions))
        representative = torch.cat([chunk.top_ids for chunk in lens])
        if self.output_reason:
            return representative, None
        logits = self.edited_logits(self.alpha * self.strength * directions)
        return representative, output_terms(torch.softmax(logits, dim=-1), representative)

    @torch.inference_mode()
    def edited_logits(self, vectors: torch.Tensor) -> torch.Tensor:
        """[n, vocabulary] next-token logits after the prompt with ``vectors[b]`` [n, d_out] added to the
        target module's output at the last position, one sequence per vector. The edit leaves every
        earlier position as it is, so the prompt's prefix runs once and its KV cache is shared by the
        batch: one batched step of the last token (a quarter of the work for the four-token prompt)."""
        model, ids, n = self.subject.model, self.prompt_ids, len(vectors)
        cache = None
        if ids.shape[1] > 1:
            cache = model(input_ids=ids[:, :-1], use_cache=True).past_key_values
            cache.batch_repeat_interleave(n)
        with adding_at_last_position(self.subject, self.target, vectors):
            out = model(input_ids=ids[:, -1:].expand(n, 1), past_key_values=cache, use_cache=cache is not None)
        self.forward_passes += 1
        return out.logits[:, -1].float()


def _terms(terms: tuple[torch.Tensor, torch.Tensor], row: int) -> dict:
    rank_term, prob_term = float(terms[0][row]), float(terms[1][row])
    return {"score": rank_term * prob_term, "rank_term": rank_term, "prob_term": prob_term}


def largest_activation(subject, dictionary, prompt_ids: torch.Tensor) -> float:
    """m: the largest activation of any latent of ``dictionary`` at the last position of ``prompt_ids``
    (the dictionary's own latents; appended planted ones are rules over token ids without a decoder)."""
    from ...models.dictionaries.planted import PlantedAppended

    own = dictionary.base if isinstance(dictionary, PlantedAppended) else dictionary
    subject.attach(dictionary.hookpoint, dictionary.reads)
    vector = subject.read(prompt_ids)[0, -1]
    return float(own.encode(vector.to(torch.float32)).max())
