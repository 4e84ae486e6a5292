"""The planted dictionary: latents that are rules over token ids, with known descriptions and densities.

``--sae planted:FILE`` collects these latents alone; ``--planted FILE`` appends them to any other
dictionary's latents, their indices after its own (``PlantedAppended``). The file is described in
docs/planted.md (``planted_spec.py`` reads it); the rule families are in ``planted_rules.py``.

How a latent fires, given its target ``density`` d and ``fidelity`` f, over the counted tokens (special
tokens and, with exclude_first_position, position 0 left out, as collect counts them):

1. **Calibration**, once per collect, before any activation: the rule is run over the collect's own
   sequences, giving N counted tokens and M where the rule holds.
2. Where the rule holds, the latent fires with probability ``p_rule = min(1, d f N / M)`` (thinning), so
   about d f N activations follow the rule; where it does not hold, with probability
   ``p_noise = (1 - f) d N / (N - M)``, so about (1 - f) d N activations land on random other tokens.
   The share of activations following the rule is then f.
3. A rule that holds on fewer than d f N tokens cannot reach the target: it fires on all of them, the
   expected density is recorded (``expected_density``, ``density_reached`` false) and a warning is
   logged; never silently.

Every choice is a hash of (file seed, latent, the sequence's token ids, position), so activations are
a function of the tokens alone: the same for any batch size, device or sharding. Magnitudes are drawn
from each latent's distribution by a second hash. Planted latents have no decoder direction:
``decoder_directions`` refuses, and the intervention scorers mark them unscored.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from ...errors import AutointerpError
from .base import Dictionary
from .planted_hash import position_uniforms
from .planted_rules import Matcher, Vocabulary, compile_rule
from .planted_spec import PlantedFile, read_planted_file

log = logging.getLogger(__name__)

SCHEME = "planted:"
_FIRE, _MAGNITUDE = 0x46495245, 0x4D41474E  # separate hash streams: whether it fires, how strongly
NO_DIRECTION = "planted latent: a rule over token ids, it has no decoder direction to steer"


def load_planted(path: str | Path) -> PlantedDictionary:
    """The planted dictionary of the file at ``path`` (``planted:`` stripped)."""
    text = str(path)
    return PlantedDictionary(read_planted_file(text[len(SCHEME) :] if text.startswith(SCHEME) else text))


class PlantedDictionary(Dictionary):
    """Latents computed from token ids by the rules of a planted file (module docstring). ``bind`` gives
    it the tokenizer's vocabulary and the collect's sequences before ``encode_tokens``."""

    format = "planted"
    reads = "output"
    reads_vectors = False  # collect skips the subject model's forward pass for planted latents alone

    def __init__(self, planted: PlantedFile, d_in: int = 0):
        self.planted = planted
        self.d_sae = len(planted.latents)
        self.d_in = d_in  # planted latents read no vector; set to the hookpoint's width when attached
        self.source = planted.source
        self.files = (planted.source,)
        self._matchers: list[Matcher] | None = None
        self._special = torch.zeros(0, dtype=torch.int64)
        self._exclude_first = True
        self._sequences: Callable[[], Iterable[torch.Tensor]] | None = None
        self._calibration: dict | None = None

    def bind(
        self,
        vocab: Vocabulary,
        special_ids: list[int],
        exclude_first_position: bool,
        sequences: Callable[[], Iterable[torch.Tensor]],
        semantic_class=None,
    ) -> PlantedDictionary:
        """Compile the rules over ``vocab`` and remember how to read the collect's sequences (``sequences()``
        yields [batch, seq] token ids) for the calibration, which runs on first use. ``semantic_class``:
        see ``planted_rules.compile_rule``; by default the sentence-embedding classes of
        ``planted_semantic``, loaded only when a semantic rule is present."""
        if semantic_class is None and any(s.family == "semantic" for s in self.planted.latents):
            from .planted_semantic import SemanticClasses

            semantic_class = SemanticClasses(vocab)
            log.info("computing the semantic classes of the vocabulary once for this collect")
        self._matchers = [compile_rule(s.rule, vocab, semantic_class) for s in self.planted.latents]
        self._special = torch.tensor(sorted(set(special_ids)), dtype=torch.int64)
        self._exclude_first = exclude_first_position
        self._sequences = sequences
        self._calibration = None
        return self

    # --- the Dictionary interface -------------------------------------------------------------------
    def to(self, device, dtype: torch.dtype = torch.float32) -> PlantedDictionary:
        return self

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise AutointerpError(
            "A planted dictionary reads token ids, not activations.",
            "encode_tokens(x, token_ids), as collect calls it.",
            "use the planted dictionary through `autointerp collect --sae planted:FILE` (or --planted FILE).",
        )

    def encode_tokens(self, x: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        return self.activations(token_ids).to(x.dtype if x.is_floating_point() else torch.float32)

    def decoder_directions(self) -> torch.Tensor:
        raise AutointerpError(f"The {self.describe()} has no decoder directions.", NO_DIRECTION + ".")

    def describe(self) -> str:
        return f"planted dictionary with {self.d_sae} latents (rules over token ids) from {self.source}"

    # --- rules, calibration, activations ------------------------------------------------------------
    def _bound(self) -> list[Matcher]:
        if self._matchers is None:
            raise AutointerpError(
                "The planted dictionary was used before its rules were compiled.",
                "bind(vocabulary, ...) first, as collect's setup does.",
            )
        return self._matchers

    def counted(self, ids: torch.Tensor) -> torch.Tensor:
        """Positions collect counts: not a special token, and not position 0 when it is excluded."""
        mask = ~torch.isin(ids, self._special.to(ids.device))
        if self._exclude_first:
            mask[:, 0] = False
        return mask

    def matches(self, ids: torch.Tensor) -> torch.Tensor:
        """[batch, seq, n] where each latent's rule holds (counted positions only)."""
        counted = self.counted(ids)
        return torch.stack([m(ids) & counted for m in self._bound()], dim=-1)

    def calibration(self) -> dict:
        """Counted tokens N, rule matches M per latent and the firing probabilities (module docstring);
        computed once, over the sequences given to ``bind``."""
        if self._calibration is not None:
            return self._calibration
        self._bound()
        n, m = 0, torch.zeros(self.d_sae, dtype=torch.int64)
        for ids in self._sequences():
            ids = torch.as_tensor(ids, dtype=torch.int64)
            n += int(self.counted(ids).sum())
            m += self.matches(ids).sum(dim=(0, 1))
        self._calibration = calibrate(self.planted, n, m.tolist())
        for j, row in enumerate(self._calibration["latents"]):
            if not row["density_reached"]:
                spec = self.planted.latents[j]
                log.warning(
                    "planted latent %d (%s): its rule holds on %.3g of %d tokens, below density x fidelity = %.3g; "
                    "it fires on every match and reaches a density of about %.3g instead of %.3g",
                    j, spec.description, row["rule_density"], n, spec.density * spec.fidelity,
                    row["expected_density"], spec.density,
                )  # fmt: skip
        return self._calibration

    def activations(self, ids: torch.Tensor) -> torch.Tensor:
        """[batch, seq, n] activations of token ids [batch, seq]."""
        ids = ids.to(torch.int64)
        cal = self.calibration()
        match = self.matches(ids)
        counted = self.counted(ids).unsqueeze(-1)
        latents = torch.arange(self.d_sae, device=ids.device)
        fire_u = position_uniforms(ids, latents, self.planted.seed, _FIRE)
        p_rule = torch.tensor([r["p_rule"] for r in cal["latents"]], device=ids.device)
        p_noise = torch.tensor([r["p_noise"] for r in cal["latents"]], device=ids.device)
        fires = torch.where(match, fire_u < p_rule, counted & (fire_u < p_noise))
        magnitude = self._magnitudes(position_uniforms(ids, latents, self.planted.seed, _MAGNITUDE))
        return torch.where(fires, magnitude, torch.zeros((), device=ids.device))

    def _magnitudes(self, u: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(u)
        for j, spec in enumerate(self.planted.latents):
            mag = spec.magnitude
            if mag["distribution"] == "lognormal":
                z = torch.special.ndtri(u[..., j].clamp(1e-7, 1 - 1e-7))
                out[..., j] = torch.exp(mag["mu"] + mag["sigma"] * z)
            elif mag["distribution"] == "uniform":
                out[..., j] = mag["low"] + (mag["high"] - mag["low"]) * u[..., j]
            else:
                out[..., j] = mag["value"]
        return out

    def rows(self, first_latent: int = 0) -> list[dict]:
        """The ground truth of each latent, with what the calibration measured (for ``planted_latents``)."""
        cal = self.calibration()
        return [
            {
                "latent": first_latent + j,
                "rule": json.dumps(spec.rule, sort_keys=True),
                "description": spec.description,
                "family": spec.family,
                "target_density": spec.density,
                "fidelity": spec.fidelity,
                "magnitude": json.dumps(spec.magnitude, sort_keys=True),
                "rule_density": row["rule_density"],
                "expected_density": row["expected_density"],
                "density_reached": row["density_reached"],
            }
            for j, (spec, row) in enumerate(zip(self.planted.latents, cal["latents"], strict=True))
        ]


def calibrate(planted: PlantedFile, n_tokens: int, matches: list[int]) -> dict:
    """Firing probabilities from N counted tokens and M rule matches per latent (module docstring)."""
    rows = []
    for spec, m in zip(planted.latents, matches, strict=True):
        want_rule, want_noise = spec.density * spec.fidelity * n_tokens, (1 - spec.fidelity) * spec.density * n_tokens
        p_rule = min(1.0, want_rule / m) if m else 0.0
        p_noise = min(1.0, want_noise / (n_tokens - m)) if n_tokens > m else 0.0
        expected = (p_rule * m + p_noise * (n_tokens - m)) / n_tokens if n_tokens else 0.0
        rows.append(
            {
                "p_rule": p_rule,
                "p_noise": p_noise,
                "rule_density": m / n_tokens if n_tokens else 0.0,
                "expected_density": expected,
                "density_reached": bool(m >= want_rule and n_tokens > 0),
            }
        )
    return {"n_tokens": n_tokens, "latents": rows}


class PlantedAppended(Dictionary):
    """Another dictionary's latents followed by planted ones (indices ``base.d_sae`` and up)."""

    def __init__(self, base: Dictionary, planted: PlantedDictionary):
        self.base, self.planted = base, planted
        self.d_in, self.d_sae = base.d_in, base.d_sae + planted.d_sae
        self.hookpoint, self.hookpoint_out, self.reads = base.hookpoint, base.hookpoint_out, base.reads
        self.signed, self.format, self.source = base.signed, f"{base.format}+planted", base.source
        self.files = tuple(base.files) + tuple(planted.files)

    def to(self, device, dtype: torch.dtype = torch.float32) -> PlantedAppended:
        self.base.to(device, dtype)
        return self

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.planted.encode(x)  # refuses: planted latents need the token ids

    def encode_tokens(self, x: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        own = self.base.encode_tokens(x, token_ids)
        return torch.cat([own, self.planted.encode_tokens(own, token_ids).to(own.dtype)], dim=-1)

    def decoder_directions(self) -> torch.Tensor:
        return self.base.decoder_directions()  # the planted latents (indices >= base.d_sae) have none

    def describe(self) -> str:
        return f"{self.base.describe()} + {self.planted.d_sae} planted latents from {self.planted.source}"


def planted_part(dictionary: Dictionary) -> tuple[int, PlantedDictionary] | None:
    """(index of the first planted latent, the planted dictionary) of ``dictionary``, or None."""
    if isinstance(dictionary, PlantedDictionary):
        return 0, dictionary
    if isinstance(dictionary, PlantedAppended):
        return dictionary.base.d_sae, dictionary.planted
    return None
