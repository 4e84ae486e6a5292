"""Collect's run-a-shard phase: sequences ``first`` to ``last`` - 1 through model -> dictionary ->
sampler.

Batches are cut from a shard's first sequence, so a shard that starts at a multiple of the batch size
sees exactly the batches of a single pass (the same inputs give bitwise the same activations), and every
random choice of the sampler is a hash of global sequence numbers (``hashing.py``): the shards of a
collect, merged, equal one pass over all of it.
"""

from __future__ import annotations

import dataclasses
import math
import queue
import threading
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import CollectConfig
from ..corpus import SequencePacker, no_sequence_error, nonempty_texts, texts_of
from ..errors import AutointerpError
from ..models.subject import SubjectModel
from .sampler import SamplerSizes, StreamingSampler


def _batches(
    config: CollectConfig, subject: SubjectModel, corpus, first: int, last: int, position: tuple[int, int] | None = None
):
    """Yield ([batch, seq_len] token ids, [batch, seq_len] document ids) of sequences ``first`` to
    ``last`` - 1, tokenizing in a background thread; return the number of sequences made. Batches are
    cut from ``first``, so a shard that starts at a multiple of the batch size sees exactly the batches
    a single pass sees (the same inputs give bitwise the same activations). ``position`` is where
    sequence ``first`` begins in the corpus (``SequencePacker.locate``); without it the sequences before
    ``first`` are tokenized and dropped."""
    packer = SequencePacker(subject.tokenizer, config.seq_len)
    out: queue.Queue = queue.Queue(maxsize=8)
    stop = threading.Event()
    if position is None:
        texts, offset, skip, document = texts_of(corpus, config.text_column), 0, first, 0
    else:
        texts, offset, skip = nonempty_texts(corpus, config.text_column, position[0]), position[1], 0
        document = position[0]

    def produce():
        try:
            batch, owners, made, index = [], [], 0, first - skip - 1
            for seq, documents in packer.sequences_with_documents(texts, offset, document):
                index += 1
                if index < first:
                    continue
                batch.append(seq)
                owners.append(documents)
                made += 1
                if len(batch) == config.batch_size or first + made == last:
                    out.put((torch.from_numpy(np.stack(batch)), torch.from_numpy(np.stack(owners))))
                    batch, owners = [], []
                if first + made == last or stop.is_set():
                    break
            if batch:
                out.put((torch.from_numpy(np.stack(batch)), torch.from_numpy(np.stack(owners))))
            out.put(("end", made))
        except BaseException as exc:  # hand the error to the consumer
            out.put(("error", exc))

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            item = out.get()
            if isinstance(item[0], str):  # ("error", exception) or ("end", sequences made)
                if item[0] == "error":
                    raise item[1]
                return item[1]
            yield item
    finally:
        stop.set()


def n_sequences(config: CollectConfig) -> int:
    return math.ceil(config.tokens / config.seq_len)


def negative_capacity(config: CollectConfig) -> int:
    """Non-activating windows kept per latent: the negatives asked for and a quarter more, to replace
    those that share a document with another split's activating contexts (select.py)."""
    need = config.random_test + config.random_validate + config.random_explain
    return need + need // 4


def sampler_sizes(config: CollectConfig, n_latents: int, signed: bool) -> SamplerSizes:
    sizes = SamplerSizes(
        n_latents=n_latents,
        seq_len=config.seq_len,
        window=config.window,
        peak_offset=config.peak_offset,
        jitter_peak=config.jitter_peak,
        windows_per_sequence=config.windows_per_sequence,
        top_k=config.top_k,
        reservoir=config.reservoir,
        negatives=negative_capacity(config),
        histogram_bins=config.histogram_bins,
        seed=config.seed,
        signed=signed,
    )
    return dataclasses.replace(sizes, keep_windows=keeps_windows(config.sampler_memory, sizes))


KEEP_WINDOWS_BELOW = 2**30  # --sampler-memory auto keeps windows while the full buffers take under 1 GiB


def sampler_bytes_per_latent(sizes: SamplerSizes) -> int:
    """Bytes per latent of a sampler of these sizes (``StreamingSampler.nbytes``, measured on the meta
    device: shapes without storage)."""
    return StreamingSampler(dataclasses.replace(sizes, n_latents=1), torch.device("meta")).nbytes()


def keeps_windows(sampler_memory: str, sizes: SamplerSizes) -> bool:
    """Whether the sampler keeps every candidate's window (one pass) or keys only (the chosen windows are
    replayed after selection, ``replay.py``), by ``--sampler-memory``: ``auto`` keeps them while the full
    buffers of all latents take under 1 GiB (about 14k latents at default sizes)."""
    if sampler_memory != "auto":
        return sampler_memory == "windows"
    full = dataclasses.replace(sizes, keep_windows=True)
    return sampler_bytes_per_latent(full) * sizes.n_latents < KEEP_WINDOWS_BELOW


def corpus_too_short(config: CollectConfig, available: int) -> AutointerpError:
    if available == 0:
        return no_sequence_error(config.seq_len)
    have = available * config.seq_len
    return AutointerpError(
        f"The corpus has only {have:,} tokens ({available:,} sequences of {config.seq_len}); "
        f"{config.tokens:,} were requested.",
        f"--tokens at most {have:,} for this corpus.",
        f"pass --tokens {have} (or --tokens all), or a larger dataset.",
    )


def encode_batch(config: CollectConfig, subject: SubjectModel, dictionary, ids: torch.Tensor, special: torch.Tensor):
    """One batch of token ids ([B, T], on the model's device) through model -> dictionary: the activations
    ([B, T, L]) and which positions may count (``StreamingSampler.update``). The replay of chosen windows
    (``replay.py``) calls this too, so that the same batch gives bitwise the same activations."""
    vectors = subject.read(ids) if dictionary.reads_vectors else ids.new_zeros((*ids.shape, 0), dtype=torch.float32)
    acts = dictionary.encode_tokens(vectors, ids)
    counted = ~torch.isin(ids, special)
    if config.exclude_first_position:
        counted[:, 0] = False
    return acts, counted


def stream(
    config: CollectConfig,
    subject: SubjectModel,
    dictionary,
    corpus,
    first: int,
    last: int,
    progress: bool = True,
    position: tuple[int, int] | None = None,
) -> tuple[StreamingSampler, int, float]:
    """Run sequences ``first`` to ``last`` - 1 through model -> dictionary -> sampler: the sampler, the
    sequences made (fewer than asked when the corpus ends) and the seconds it took. ``position``: see
    ``_batches``."""
    device = subject.device
    sampler = StreamingSampler(sampler_sizes(config, dictionary.d_sae, dictionary.signed), device)
    special = torch.tensor(subject.special_token_ids(), dtype=torch.int64, device=device)
    bar = tqdm(
        total=(last - first) * config.seq_len,
        unit="tok",
        unit_scale=True,
        disable=not progress,
        desc="collect",
        dynamic_ncols=True,
    )
    start = time.perf_counter()
    done = first
    batches = _batches(config, subject, corpus, first, last, position)
    try:
        # inference mode throughout: the sampler may update in place what the dictionary returns, which
        # for raw neurons is the tensor the hook captured
        with torch.inference_mode():
            for ids, documents in batches:
                ids = ids.to(device)
                acts, counted = encode_batch(config, subject, dictionary, ids, special)
                seq_ids = torch.arange(done, done + ids.shape[0], device=device)
                sampler.update(acts, ids, counted, seq_ids, documents.to(device))
                done += ids.shape[0]
                bar.update(ids.numel())
            sampler.finish()
    finally:
        bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return sampler, done - first, time.perf_counter() - start
