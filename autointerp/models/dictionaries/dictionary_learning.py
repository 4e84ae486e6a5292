"""BatchTopK SAEs of saprmarks/dictionary_learning: a folder with ``ae.pt`` and ``config.json``.

Source: saprmarks/dictionary_learning ``trainers/batch_top_k.py`` (BatchTopKSAE) and
``trainers/matryoshka_batch_top_k.py`` (MatryoshkaBatchTopKSAE). BatchTopK picks the k * batch largest
activations of a whole batch while training, which makes a latent depend on the other inputs; at
inference these classes use the threshold learnt during training instead (``use_threshold=True``),
and so do we: latents = relu(pre) where relu(pre) > threshold. What is read:

- ``config.json``: ``trainer.dict_class`` ('BatchTopKSAE' or 'MatryoshkaBatchTopKSAE'), ``trainer.k``.
- ``ae.pt`` (a torch state dict): ``threshold`` [] (negative while never estimated: refused), ``k``,
  ``b_dec`` [d_in]; BatchTopKSAE: ``encoder.weight`` [d_sae, d_in], ``encoder.bias``,
  ``decoder.weight`` [d_in, d_sae]; Matryoshka: ``W_enc`` [d_in, d_sae], ``b_enc``, ``W_dec`` [d_sae, d_in].
- pre = (x - b_dec) @ W_enc + b_enc. The files name no module (``submodule_name`` is a free label).

For SAELens' own BatchTopK checkpoints (``topk_threshold``) see ``saelens.py``.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import AutointerpError
from .base import check_tensors, require
from .files import load_tensors, read_json, require_files
from .linear import LinearDictionary

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "ae.pt"
LAYOUT = "dictionary_learning"
DICT_CLASSES = ("BatchTopKSAE", "MatryoshkaBatchTopKSAE")


def is_dictionary_learning(folder: Path) -> bool:
    if not ((folder / WEIGHTS_FILE).is_file() and (folder / CONFIG_FILE).is_file()):
        return False
    return isinstance(read_json(folder / CONFIG_FILE).get("trainer"), dict)


def load(path: str | Path) -> LinearDictionary:
    folder = Path(path)
    require_files(folder, (CONFIG_FILE, WEIGHTS_FILE), LAYOUT)
    trainer = read_json(folder / CONFIG_FILE).get("trainer") or {}
    dict_class = trainer.get("dict_class")
    if dict_class not in DICT_CLASSES:
        raise AutointerpError(
            f"dict_class {dict_class!r} in {folder / CONFIG_FILE} is not supported.",
            f"one of {', '.join(DICT_CLASSES)}.",
            "convert the dictionary to SAELens format (SAELens' dictionary_learning loader).",
        )
    source = str(folder / WEIGHTS_FILE)
    w = {name: t.float() for name, t in load_tensors(folder / WEIGHTS_FILE).items()}
    if dict_class == "BatchTopKSAE":
        require(
            source,
            w,
            ("encoder.weight", "encoder.bias", "decoder.weight", "b_dec", "threshold"),
            "encoder.weight, encoder.bias, decoder.weight, b_dec, threshold (BatchTopKSAE's state dict).",
        )
        W_enc, b_enc, W_dec = w["encoder.weight"].T.contiguous(), w["encoder.bias"], w["decoder.weight"].T.contiguous()
    else:
        require(
            source,
            w,
            ("W_enc", "b_enc", "W_dec", "b_dec", "threshold"),
            "W_enc, b_enc, W_dec, b_dec, threshold (MatryoshkaBatchTopKSAE's state dict).",
        )
        W_enc, b_enc, W_dec = w["W_enc"], w["b_enc"], w["W_dec"]
    d_in, d_sae = W_enc.shape
    check_tensors(
        source,
        {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": w["b_dec"], "threshold": w["threshold"]},
        {"b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,), "threshold": ()},
    )
    threshold = w["threshold"]
    if float(threshold) < 0:
        raise AutointerpError(
            f"The BatchTopK threshold in {source} was never estimated (it is {float(threshold)}).",
            "a threshold >= 0, learnt after threshold_start_step training steps.",
            "use a checkpoint from later in training.",
        )
    return LinearDictionary(
        W_enc=W_enc,
        b_enc=b_enc,
        W_dec=W_dec,
        b_dec=w["b_dec"],
        activation="jumprelu",
        threshold=threshold,
        input_bias=w["b_dec"],
        format=LAYOUT,
        source=str(folder),
        files=(folder / CONFIG_FILE, folder / WEIGHTS_FILE),
    )
