"""The rule families of planted latents, compiled against a vocabulary into matchers over token ids.

A matcher maps token ids [batch, seq] to a boolean mask [batch, seq] of the positions where the rule
holds; it reads the ids only (never the model), so the ground truth is exact. Families:

- ``word_list``: each word, as the tokenizer writes it alone, after a space, and capitalised, matched as
  a token sequence; the rule holds at the **last** token of each occurrence;
- ``gated``: a ``words`` occurrence (as above) that ends within the ``within`` tokens after the end of
  a ``context_words`` occurrence (positions t - within .. t - 1);
- ``structural``: ``after_newline`` (the token after one holding a newline), ``digits`` (a token of
  digits only, spaces aside), ``capitalised_after_period`` (a capitalised word token after a token
  ending in '.'), ``closing_bracket`` (a token made of closing brackets);
- ``semantic``: word tokens (letters only, 3 or more) whose sentence embedding lies within the cosine
  ``threshold`` of the ``concept`` phrase's (``planted_semantic.py``); computed once per vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Matcher = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Vocabulary:
    """What the rules need of a tokenizer: each id's string, and a text's ids (no special tokens)."""

    strings: list[str]
    encode: Callable[[str], list[int]]
    name: str = ""  # identifies the tokenizer in caches

    @classmethod
    def of(cls, tokenizer) -> Vocabulary:
        strings = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        return cls(strings, lambda text: tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.name_or_path)

    def lookup(self, ids: set[int] | list[int]) -> torch.Tensor:
        """A boolean table over the vocabulary, true at ``ids``."""
        table = torch.zeros(len(self.strings), dtype=torch.bool)
        table[torch.as_tensor(sorted(ids), dtype=torch.int64)] = True
        return table

    def classify(self, test: Callable[[str], bool]) -> torch.Tensor:
        return torch.tensor([test(s) for s in self.strings], dtype=torch.bool)


def word_sequences(vocab: Vocabulary, words: list[str]) -> list[tuple[int, ...]]:
    """The token sequences of each word alone, after a space, and capitalised (distinct, non-empty)."""
    variants = {v for w in words for v in (w, " " + w, w.capitalize(), " " + w.capitalize())}
    return sorted({tuple(vocab.encode(v)) for v in variants} - {()})


def sequence_ends(ids: torch.Tensor, sequences: list[tuple[int, ...]]) -> torch.Tensor:
    """True where one of ``sequences`` ends at that position of ``ids`` [batch, seq]."""
    hit = torch.zeros_like(ids, dtype=torch.bool)
    singles = [s[0] for s in sequences if len(s) == 1]
    if singles:
        hit |= torch.isin(ids, torch.tensor(singles, dtype=ids.dtype, device=ids.device))
    for seq in (s for s in sequences if len(s) > 1):
        n = len(seq)
        if n > ids.shape[-1]:
            continue
        match = torch.ones_like(ids[:, n - 1 :], dtype=torch.bool)
        for j, token in enumerate(seq):
            match &= ids[:, j : ids.shape[-1] - n + 1 + j] == token
        hit[:, n - 1 :] |= match
    return hit


def within_after(mask: torch.Tensor, k: int) -> torch.Tensor:
    """True at t where ``mask`` holds somewhere in t - k .. t - 1 (same sequence)."""
    count = torch.nn.functional.pad(mask.to(torch.int32).cumsum(-1), (1, 0))  # count[t] = hits before t
    earlier = torch.nn.functional.pad(count, (k, 0))[:, : count.shape[-1]]  # hits before t - k
    return (count - earlier)[:, :-1] > 0


def previous(mask: torch.Tensor) -> torch.Tensor:
    """True at t where ``mask`` holds at t - 1."""
    return torch.nn.functional.pad(mask[:, :-1], (1, 0))


def _stripped(test: Callable[[str], bool]) -> Callable[[str], bool]:
    return lambda s: test(s.strip())


STRUCTURAL_TESTS: dict[str, Callable[[str], bool]] = {
    "newline": lambda s: "\n" in s,
    "digits": _stripped(lambda s: s.isdigit()),
    "capitalised": lambda s: s.strip()[:1].isupper() and s.strip().isalpha(),
    "period": lambda s: s.rstrip().endswith("."),
    "closing_bracket": _stripped(lambda s: bool(s) and set(s) <= set(")]}")),
}


def compile_rule(
    rule: dict, vocab: Vocabulary, semantic_class: Callable[[str, float], torch.Tensor] | None = None
) -> Matcher:
    """The matcher of ``rule`` (checked by ``planted_spec``) over ``vocab``. ``semantic_class(concept,
    threshold)`` gives the vocabulary table of a semantic rule (``planted_semantic.semantic_class``)."""
    family = rule["family"]
    if family == "word_list":
        sequences = word_sequences(vocab, rule["words"])
        return lambda ids: sequence_ends(ids, sequences)
    if family == "gated":
        words, context = word_sequences(vocab, rule["words"]), word_sequences(vocab, rule["context_words"])
        within = int(rule["within"])
        return lambda ids: sequence_ends(ids, words) & within_after(sequence_ends(ids, context), within)
    if family == "structural":
        return _structural(rule["kind"], vocab)
    if family == "semantic":
        if semantic_class is None:
            raise ValueError("a semantic rule needs semantic_class")
        table = semantic_class(rule["concept"], float(rule["threshold"]))
        return _token_class(table)
    raise ValueError(f"unknown family {family!r}")


def _token_class(table: torch.Tensor) -> Matcher:
    def match(ids: torch.Tensor) -> torch.Tensor:
        return table.to(ids.device)[ids.clamp(0, len(table) - 1)] & (ids < len(table))

    return match


def _structural(kind: str, vocab: Vocabulary) -> Matcher:
    tables = {name: _token_class(vocab.classify(test)) for name, test in STRUCTURAL_TESTS.items()}
    if kind == "after_newline":
        return lambda ids: previous(tables["newline"](ids)) & ~tables["newline"](ids)
    if kind == "digits":
        return tables["digits"]
    if kind == "capitalised_after_period":
        return lambda ids: tables["capitalised"](ids) & previous(tables["period"](ids))
    if kind == "closing_bracket":
        return tables["closing_bracket"]
    raise ValueError(f"unknown structural rule {kind!r}")
