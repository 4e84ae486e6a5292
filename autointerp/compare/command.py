"""``autointerp compare --db A --db B --out M.duckdb``: match the latents of two dictionaries on one
subject model and measure how alike they are (README "Compare SAEs").

Steps: check both databases (``sources``); load both dictionaries' decoder directions; match them one
to one (``matching``); where both collects read the same corpus, correlate matched latents'
activations over ``--tokens`` tokens (``activations``); unless ``--no-explanations``, the cosine of
matched latents' explanation embeddings (``explanations``); write M (``writer``) and print the summary.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from ..errors import AutointerpError
from ..models.dictionaries import resolve_module_names
from . import sources as sources_mod
from .activations import activation_correlation, token_batches
from .explanations import explanation_similarity, latest_vectors
from .matching import DEFAULT_CANDIDATES, EXACT_LIMIT, match_decoders, random_matching
from .summary import Measure, decoder_measures, pair_measures
from .writer import check_out, write_comparison

log = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "compare",
        help="compare: match the latents of two dictionaries of one model (PW-MCC, activations, explanations)",
        description="Match the latents of two collect databases' dictionaries one to one by decoder cosine "
        "(exact Hungarian up to 4096 x 4096 latents, a sparse top-k matching above), then measure each "
        "matched pair: decoder cosine, activation correlation over a corpus sample (when both collects read "
        "the same corpus) and explanation similarity. Writes M (tables compare_sources, latent_matches, "
        "compare_summary; docs/schema.md) and prints the summary. The inputs are only read, except that "
        "explanation embeddings are stored in them (derived rows) when they are writable.",
        epilog="example: autointerp compare --db a.duckdb --db b.duckdb --out ab.duckdb",
    )
    parser.add_argument("--db", action="append", required=True, help="a collect database; give --db twice (A, B)")
    parser.add_argument("--out", required=True, help="the comparison file to write (DuckDB)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out when it exists")
    parser.add_argument(
        "--tokens",
        type=int,
        default=20_000,
        help="corpus tokens read for the activation correlation (0: skip it; default: 20000)",
    )
    parser.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass (default: 8)")
    parser.add_argument(
        "--no-explanations",
        action="store_true",
        help="skip explanation similarity, so that databases without explanations can be compared",
    )
    parser.add_argument(
        "--candidates",
        type=int,
        default=DEFAULT_CANDIDATES,
        help=f"sparse matching: nearest latents per latent, both ways (default: {DEFAULT_CANDIDATES})",
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the random-dictionary baseline (it doubles matching time)"
    )
    parser.add_argument("--device", default="auto", help="device for the subject model (default: auto)")
    return parser


def decoder_space(dictionary) -> str:
    """Where a dictionary's decoder directions live: the same string on both sides means comparable. An
    SAE writes back to the module it reads (at any residual layer: one shared space); a transcoder and
    the MLP neurons write an MLP's output, which is not the space of an SAE's directions."""
    from ..models.dictionaries import NeuronDictionary

    if isinstance(dictionary, NeuronDictionary):
        kind = "MLP neurons"
    else:
        kind = "transcoder" if dictionary.reads == "input" else "SAE"
    return f"{kind} output, width {int(dictionary.decoder_directions().shape[1])}"


def compare(
    path_a,
    path_b,
    out,
    overwrite: bool = False,
    tokens: int = 20_000,
    batch_size: int = 8,
    explanations: bool = True,
    candidates: int = DEFAULT_CANDIDATES,
    baseline: bool = True,
    device: str = "auto",
    exact_limit: int = EXACT_LIMIT,
) -> list[Measure]:
    """Compare the databases at ``path_a`` and ``path_b`` into ``out``; returns the summary measures."""
    out = Path(out)
    if tokens < 0 or batch_size < 1 or candidates < 1:
        raise AutointerpError(
            f"--tokens {tokens}, --batch-size {batch_size}, --candidates {candidates}.",
            "--tokens >= 0, --batch-size >= 1, --candidates >= 1.",
        )
    check_out(out, [Path(path_a), Path(path_b)], overwrite)
    a, b = sources_mod.open_sides(path_a, path_b, explanations)
    subject, dict_a = a.source.load(device)
    _, dict_b = b.source.load("cpu")  # the dictionary only: A's model reads both hookpoints
    for dictionary in (dict_a, dict_b):  # names relative to model.base_model (sparsify) -> full module names
        resolve_module_names(dictionary.to("cpu"), subject)
    dec_a, dec_b = dict_a.decoder_directions().detach().float(), dict_b.decoder_directions().detach().float()
    n_a, n_b = int(dec_a.shape[0]), int(dec_b.shape[0])
    space_a, space_b = decoder_space(dict_a), decoder_space(dict_b)
    measures = [
        Measure("n_latents_a", n_a, n_a, None, f"{dict_a.describe()}; decoder: {space_a}"),
        Measure("n_latents_b", n_b, n_b, None, f"{dict_b.describe()}; decoder: {space_b}"),
    ]
    rows = [sources_mod.describe(a, n_a, int(dec_a.shape[1])), sources_mod.describe(b, n_b, int(dec_b.shape[1]))]
    if space_a != space_b:
        why = (
            f"decoder directions live in different spaces ({space_a} vs {space_b}): decoder cosine, and so the "
            "matching and every per-pair measure, do not apply"
        )
        measures.append(Measure("pw_mcc", None, 0, None, why))
        write_comparison(out, rows, np.empty(0), np.empty(0), None, None, None, measures)
        return measures

    start = time.perf_counter()
    matching = match_decoders(dec_a, dec_b, exact_limit=exact_limit, k=candidates)
    log.info("matched %d pairs (%s) in %.1fs", len(matching), matching.method, time.perf_counter() - start)
    rand = random_matching(n_a, n_b, int(dec_a.shape[1]), exact_limit=exact_limit, k=candidates) if baseline else None
    measures += decoder_measures(matching, rand, n_a, n_b)

    activation, why_not = None, sources_mod.same_corpus(a, b)
    if why_not is None and tokens == 0:
        why_not = "--tokens 0"
    if why_not is None:
        batches = token_batches(subject, a.corpus, tokens, batch_size)
        activation, read = activation_correlation(
            subject, dict_a, dict_b, matching.latent_a, matching.latent_b, batches
        )
        log.info("activation correlation over %d tokens", read)
    else:
        measures.append(Measure("activation_corr", None, 0, None, f"not measured: {why_not}"))

    similarity = None
    if explanations:
        from ..models.sentence_encoder import SentenceEncoder

        encoder = SentenceEncoder()
        similarity = explanation_similarity(
            latest_vectors(a.path, encoder), latest_vectors(b.path, encoder), matching.latent_a, matching.latent_b
        )
    else:
        measures.append(Measure("explanation_sim", None, 0, None, "not measured: --no-explanations"))
    measures += pair_measures(matching.cosine, activation, similarity)
    write_comparison(out, rows, matching.latent_a, matching.latent_b, matching.cosine, activation, similarity, measures)
    return measures


def render(measures: list[Measure]) -> str:
    """The summary as aligned text lines."""
    lines = []
    for m in measures:
        value = "NULL" if m.value is None else f"{m.value:.4f}"
        base = "" if m.baseline is None else f"  (random: {m.baseline:.4f})"
        n = "" if m.n is None else f"  n={m.n}"
        lines.append(f"{m.measure:<32} {value:>8}{n}{base}")
        if m.value is None and m.note:
            lines.append(f"{'':<32} {m.note}")
        elif m.measure == "assignment":
            lines.append(f"{'':<32} {m.note}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if len(args.db) != 2:
        raise AutointerpError(
            f"--db was given {len(args.db)} time(s).",
            "exactly two databases: --db A.duckdb --db B.duckdb.",
        )
    measures = compare(
        args.db[0],
        args.db[1],
        args.out,
        overwrite=args.overwrite,
        tokens=args.tokens,
        batch_size=args.batch_size,
        explanations=not args.no_explanations,
        candidates=args.candidates,
        baseline=not args.no_baseline,
        device=args.device,
    )
    print(render(measures))
    print(f"wrote {args.out}: tables compare_sources, latent_matches, compare_summary")
    return 0
