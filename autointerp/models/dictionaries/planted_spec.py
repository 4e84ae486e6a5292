"""The planted dictionary's file: read it (JSON or TOML) and check every field (docs/planted.md).

A file is ``{"seed": 0, "latents": [{...}, ...]}``; each latent has a ``rule`` (``family`` plus the
family's fields), a ``description`` (the ground truth an explanation should find), a target firing
``density`` per token in (0, 1), a ``fidelity`` in [0, 1] (the share of its activations that follow the
rule) and a ``magnitude`` distribution. Every mistake is an ``AutointerpError`` naming the latent and
the field, before anything is loaded or stored.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import AutointerpError

FAMILIES = {
    "word_list": "words (a list of words; fires on the last token of each occurrence)",
    "gated": "words, context_words and within (a word fires only after a context word in the previous k tokens)",
    "structural": "kind (after_newline, digits, capitalised_after_period or closing_bracket)",
    "semantic": "concept and threshold (tokens whose embedding similarity to the concept is above threshold)",
}
STRUCTURAL_KINDS = ("after_newline", "digits", "capitalised_after_period", "closing_bracket")
DISTRIBUTIONS = {
    "lognormal": ("mu", "sigma"),
    "constant": ("value",),
    "uniform": ("low", "high"),
}
DEFAULT_MAGNITUDE = {"distribution": "lognormal", "mu": 0.0, "sigma": 0.5}
FIX = "see docs/planted.md for the file format (an example: data/planted_example.json)."


@dataclass(frozen=True)
class PlantedSpec:
    """One planted latent as the file states it."""

    rule: dict
    description: str
    density: float
    fidelity: float
    magnitude: dict = field(default_factory=lambda: dict(DEFAULT_MAGNITUDE))

    @property
    def family(self) -> str:
        return self.rule["family"]


@dataclass(frozen=True)
class PlantedFile:
    """A parsed planted file: its latents in order, the seed of every random choice, and its path."""

    latents: tuple[PlantedSpec, ...]
    seed: int
    source: str


def read_planted_file(path: str | Path) -> PlantedFile:
    """Parse and check the planted file at ``path`` (``.toml`` as TOML, anything else as JSON)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise AutointerpError(
            f"The planted file {path} does not exist.", "a JSON or TOML file of planted latents.", FIX
        )
    text = path.read_text(encoding="utf-8", errors="replace")
    kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
    try:
        data = _toml().loads(text) if kind == "TOML" else json.loads(text)
    except ValueError as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError are ValueErrors
        raise AutointerpError(f"The planted file {path} is not valid {kind}: {exc}.", f"valid {kind}.", FIX) from None
    return parse_planted(data, str(path))


def _toml():
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise AutointerpError(
                "Reading a TOML planted file needs Python 3.11 or the package tomli.",
                "Python 3.11+, or tomli installed.",
                "pip install tomli, or write the file as JSON.",
            ) from None
    return tomllib


def parse_planted(data, source: str = "the planted file") -> PlantedFile:
    """Check a planted file's content (already parsed) and return it."""
    if not isinstance(data, dict) or not isinstance(data.get("latents"), list) or not data["latents"]:
        raise AutointerpError(
            f"{source} has no list of latents.",
            'an object {"seed": 0, "latents": [{...}, ...]} with one latent or more.',
            FIX,
        )
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise AutointerpError(f"{source}: seed is {seed!r}.", "a non-negative integer.", FIX)
    unknown = sorted(set(data) - {"seed", "latents"})
    if unknown:
        raise AutointerpError(f"{source} has unknown keys: {', '.join(unknown)}.", "seed and latents.", FIX)
    latents = tuple(_latent(item, f"{source}, latent {i}") for i, item in enumerate(data["latents"]))
    return PlantedFile(latents, seed, source)


def _latent(item, where: str) -> PlantedSpec:
    if not isinstance(item, dict):
        raise AutointerpError(
            f"{where} is {type(item).__name__}.", "an object with rule, description, density, fidelity.", FIX
        )
    unknown = sorted(set(item) - {"rule", "description", "density", "fidelity", "magnitude"})
    if unknown:
        raise AutointerpError(
            f"{where} has unknown keys: {', '.join(unknown)}.", "rule, description, density, fidelity, magnitude.", FIX
        )
    description = item.get("description")
    if not isinstance(description, str) or not description.strip():
        raise AutointerpError(f"{where} has no description.", "a non-empty description (the ground truth).", FIX)
    density = _number(item, "density", where)
    if not 0 < density < 1:
        raise AutointerpError(
            f"{where}: density {density!r} is outside (0, 1).",
            "a firing density per token strictly between 0 and 1, e.g. 0.001.",
            FIX,
        )
    fidelity = _number(item, "fidelity", where, default=1.0)
    if not 0 <= fidelity <= 1:
        raise AutointerpError(
            f"{where}: fidelity {fidelity!r} is outside [0, 1].",
            "the share of activations that follow the rule, between 0 and 1 (1: every activation follows it).",
            FIX,
        )
    return PlantedSpec(_rule(item.get("rule"), where), description.strip(), density, fidelity, _magnitude(item, where))


def _number(item: dict, key: str, where: str, default: float | None = None) -> float:
    value = item.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AutointerpError(f"{where}: {key} is {value!r}.", f"a number ({key}).", FIX)
    return float(value)


def _rule(rule, where: str) -> dict:
    family = rule.get("family") if isinstance(rule, dict) else None
    if family not in FAMILIES:
        known = "; ".join(f"{name}: {fields}" for name, fields in FAMILIES.items())
        raise AutointerpError(f"{where}: unknown rule {rule!r}.", f"a rule with a family, one of {known}.", FIX)
    if family in ("word_list", "gated"):
        _words(rule, "words", where)
    if family == "gated":
        _words(rule, "context_words", where)
        within = rule.get("within")
        if isinstance(within, bool) or not isinstance(within, int) or within < 1:
            raise AutointerpError(f"{where}: within is {within!r}.", "a positive number of previous tokens.", FIX)
    if family == "structural" and rule.get("kind") not in STRUCTURAL_KINDS:
        raise AutointerpError(
            f"{where}: unknown structural rule {rule.get('kind')!r}.",
            f"kind one of {', '.join(STRUCTURAL_KINDS)}.",
            FIX,
        )
    if family == "semantic":
        if not isinstance(rule.get("concept"), str) or not rule["concept"].strip():
            raise AutointerpError(
                f"{where}: the semantic rule has no concept.", "a concept phrase, e.g. 'animals'.", FIX
            )
        threshold = rule.get("threshold")
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not -1 < threshold < 1:
            raise AutointerpError(f"{where}: threshold is {threshold!r}.", "a cosine similarity in (-1, 1).", FIX)
    return dict(rule)


def _words(rule: dict, key: str, where: str) -> None:
    words = rule.get(key)
    if not isinstance(words, list) or not words or not all(isinstance(w, str) and w.strip() for w in words):
        raise AutointerpError(f"{where}: {key} is {words!r}.", f"a non-empty list of words ({key}).", FIX)


def _magnitude(item: dict, where: str) -> dict:
    magnitude = item.get("magnitude", DEFAULT_MAGNITUDE)
    kind = magnitude.get("distribution") if isinstance(magnitude, dict) else None
    if kind not in DISTRIBUTIONS:
        raise AutointerpError(
            f"{where}: magnitude {magnitude!r} is not a known distribution.",
            "; ".join(f"{name} with {', '.join(params)}" for name, params in DISTRIBUTIONS.items()),
            FIX,
        )
    params = {p: _number(magnitude, p, f"{where}, magnitude") for p in DISTRIBUTIONS[kind]}
    if kind == "lognormal" and params["sigma"] < 0 or kind == "constant" and params["value"] <= 0:
        raise AutointerpError(f"{where}: magnitude {magnitude!r}.", "sigma >= 0; a constant value > 0.", FIX)
    if kind == "uniform" and not 0 < params["low"] <= params["high"]:
        raise AutointerpError(f"{where}: magnitude {magnitude!r}.", "0 < low <= high.", FIX)
    return {"distribution": kind, **params}
