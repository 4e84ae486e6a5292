"""SAELens on-disk format: a folder with ``cfg.json`` and ``sae_weights.safetensors``.

Source: jbloomAus/SAELens (``sae_lens/saes/*.py``, ``loading/pretrained_sae_loaders.py``,
``training/activation_scaler.py``), read at version 6.54. What is read:

- ``cfg.json``, SAELens 6 layout: ``architecture`` (standard, topk, jumprelu, gated, batchtopk,
  matryoshka_batchtopk, abstopk, transcoder, skip_transcoder, jumprelu_transcoder,
  jumprelu_skip_transcoder), ``k``, ``rescale_acts_by_decoder_norm`` (topk family: pre-activations are
  multiplied by the decoder row norms; folded here into W_enc/b_enc, the decoder rows made unit),
  ``apply_b_dec_to_input``, ``normalize_activations``, ``metadata.hook_name``,
  ``metadata.hook_name_out``, ``metadata.hf_hook_name``.
  Older layout: ``activation_fn_str`` / ``activation_fn`` with ``activation_fn_kwargs.k``, ``hook_name``
  or ``hook_point``, ``normalize_activations`` as a bool.
- ``sae_weights.safetensors``: ``W_enc`` [d_in, d_sae], ``b_enc`` [d_sae], ``W_dec`` [d_sae, d_out],
  ``b_dec`` [d_out]; ``threshold`` [d_sae] (JumpReLU; older checkpoints ``log_threshold``);
  ``b_gate``, ``b_mag``, ``r_mag`` (gated: gate = x@W_enc + b_gate > 0, magnitude =
  relu(x@(W_enc*exp(r_mag)) + b_mag)); ``topk_threshold`` [] (BatchTopK training checkpoints: inference
  is a JumpReLU at that threshold, as SAELens' own conversion does); ``W_skip`` [d_out, d_in] (skip
  transcoders); ``scaling_factor`` (pre-6 finetuning factor, multiplies the decoder).
- ``normalize_activations``: 'none', or 'expected_average_only_in' with the factor from
  ``activation_scaler.json`` (``scaling_factor``, written with SAELens training checkpoints): inputs
  are multiplied by it, folded here into the weights as SAELens' ``fold_activation_norm_scaling_factor``
  does. Any other value is refused.
- ``sparsity.safetensors`` (feature log-sparsity) is ignored.

Transcoders read the input of the MLP (``reads='input'``) and their decoder writes its output.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ...errors import AutointerpError
from .base import check_tensors, require
from .files import check_declared_sizes, load_tensors, read_json, require_files
from .hooks import split_hf_hook
from .linear import LinearDictionary

CONFIG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
SCALER_FILE = "activation_scaler.json"
LAYOUT = "SAELens"

# architecture -> (activation, is transcoder)
ARCHITECTURES = {
    "standard": ("relu", False),
    "topk": ("topk", False),
    "jumprelu": ("jumprelu", False),
    "gated": ("gated", False),
    "batchtopk": ("batchtopk", False),
    "matryoshka_batchtopk": ("batchtopk", False),
    "abstopk": ("abstopk", False),
    "transcoder": ("relu", True),
    "skip_transcoder": ("relu", True),
    "jumprelu_transcoder": ("jumprelu", True),
    "jumprelu_skip_transcoder": ("jumprelu", True),
}
_TRAINING_ONLY = ("batchtopk", "matryoshka_batchtopk")
_RESCALABLE = ("topk", "abstopk") + _TRAINING_ONLY


def activation_of(cfg: dict) -> tuple[str, int, bool]:
    """(activation, k, is_transcoder) from either cfg layout; 'batchtopk' is resolved by the loader."""
    arch = cfg.get("architecture") or "standard"
    fn = cfg.get("activation_fn_str") or cfg.get("activation_fn") or ""
    kwargs = cfg.get("activation_fn_kwargs") or {}
    if arch not in ARCHITECTURES or fn not in ("", "relu", "topk"):
        raise AutointerpError(
            f"Unknown SAE activation: architecture={arch!r}, activation_fn={fn!r}.",
            f"architecture one of {', '.join(ARCHITECTURES)}, activation_fn relu or topk.",
        )
    activation, transcoder = ARCHITECTURES[arch]
    if fn == "topk" and arch == "standard":
        activation = "topk"
    k = 0
    if activation in ("topk", "abstopk"):  # BatchTopK infers with its threshold, not k
        k = cfg.get("k", kwargs.get("k"))
        if k is None:
            raise AutointerpError("A TopK SAE config without k.", "a 'k' field (or activation_fn_kwargs.k).")
    return activation, int(k), transcoder


def hook_names(cfg: dict) -> tuple[str, str, str | None]:
    """(hookpoint, hookpoint_out, reads from hf_hook_name or None)."""
    meta = cfg.get("metadata") or {}
    hf = meta.get("hf_hook_name") or cfg.get("hf_hook_name")
    if hf:
        module, reads = split_hf_hook(hf)
        hf_out = meta.get("hf_hook_name_out") or cfg.get("hf_hook_name_out") or ""
        return module, split_hf_hook(hf_out)[0] if hf_out else "", reads
    hook = cfg.get("hook_name") or cfg.get("hook_point") or meta.get("hook_name") or ""
    hook_out = cfg.get("hook_name_out") or meta.get("hook_name_out") or ""
    return hook, hook_out, None


def scaling_factor(folder: Path, cfg: dict) -> float:
    """1.0, or the stored factor of 'expected_average_only_in' normalisation."""
    norm = cfg.get("normalize_activations", "none")
    if norm is True:  # pre-6 configs stored a bool
        norm = "expected_average_only_in"
    if norm in (None, False, "none"):
        return 1.0
    if norm != "expected_average_only_in":
        raise AutointerpError(
            f"normalize_activations={norm!r} in {folder / CONFIG_FILE} is not supported.",
            "normalize_activations 'none' or 'expected_average_only_in'.",
            "fold the normalisation into the weights with SAELens before loading.",
        )
    scaler = folder / SCALER_FILE
    factor = read_json(scaler).get("scaling_factor") if scaler.is_file() else None
    if not isinstance(factor, (int, float)) or not factor > 0:
        raise AutointerpError(
            f"{folder / CONFIG_FILE} says normalize_activations='expected_average_only_in' but no scaling factor "
            f"is stored ({SCALER_FILE} {'has none' if scaler.is_file() else 'is missing'}).",
            f"{SCALER_FILE} with a positive 'scaling_factor' (SAELens writes it with training checkpoints).",
            f"write {SCALER_FILE} with the factor, or fold it with SAELens' fold_activation_norm_scaling_factor.",
        )
    return float(factor)


def load(path: str | Path, default_apply_b_dec: bool = True) -> LinearDictionary:
    """Load a SAELens folder. ``default_apply_b_dec`` is used when cfg.json has no apply_b_dec_to_input
    (SAELens' own default is True)."""
    folder = Path(path)
    require_files(folder, (CONFIG_FILE, WEIGHTS_FILE), LAYOUT)
    cfg = read_json(folder / CONFIG_FILE)
    activation, k, transcoder = activation_of(cfg)
    source = str(folder / WEIGHTS_FILE)
    w = {name: t.float() for name, t in load_tensors(folder / WEIGHTS_FILE).items()}
    if "log_threshold" in w and "threshold" not in w:
        w["threshold"] = w.pop("log_threshold").exp()

    needed = ("W_enc", "W_dec", "b_dec") + (("b_enc",) if activation != "gated" else ("b_gate", "b_mag", "r_mag"))
    needed += {"jumprelu": ("threshold",), "batchtopk": ("topk_threshold",)}.get(activation, ())
    require(
        source,
        w,
        needed,
        "W_enc, b_enc, W_dec, b_dec (and threshold for JumpReLU; b_gate, b_mag, "
        "r_mag for gated; topk_threshold for BatchTopK; see SAELens' sae classes).",
    )
    d_in, d_sae = w["W_enc"].shape
    d_out = w["W_dec"].shape[-1] if transcoder else d_in
    check_declared_sizes(cfg, folder / CONFIG_FILE, "W_enc", {"d_in": d_in, "d_sae": d_sae})
    check_tensors(
        source,
        w,
        {
            "W_enc": (d_in, d_sae),
            "b_enc": (d_sae,),
            "W_dec": (d_sae, d_out),
            "b_dec": (d_out,),
            "threshold": (d_sae,),
            "b_gate": (d_sae,),
            "b_mag": (d_sae,),
            "r_mag": (d_sae,),
            "topk_threshold": (),
            "W_skip": (d_out, d_in),
        },
    )

    apply_b_dec = bool(cfg.get("apply_b_dec_to_input", default_apply_b_dec))
    if transcoder and apply_b_dec and "apply_b_dec_to_input" in cfg:
        raise AutointerpError(
            f"{folder / CONFIG_FILE} sets apply_b_dec_to_input for a transcoder.",
            "apply_b_dec_to_input false (b_dec lives in the output space).",
        )
    apply_b_dec = apply_b_dec and not transcoder

    W_enc, W_dec, b_dec = w["W_enc"], w["W_dec"], w["b_dec"]
    b_enc = w["b_mag"] if activation == "gated" else w["b_enc"]
    threshold = w.get("threshold")
    if activation == "batchtopk":
        threshold, activation = w["topk_threshold"].reshape(()), "jumprelu"
    if activation == "gated":
        W_gate, b_gate = W_enc, w["b_gate"]
        W_enc = W_enc * w["r_mag"].exp()
    else:
        W_gate = b_gate = None

    arch = cfg.get("architecture") or "standard"
    # training-only BatchTopK configs default to rescaling (TopKTrainingSAEConfig); inference ones do not
    if arch in _RESCALABLE and cfg.get("rescale_acts_by_decoder_norm", arch in _TRAINING_ONLY):
        norms = W_dec.norm(dim=-1)
        W_enc, b_enc, W_dec = W_enc * norms, b_enc * norms, W_dec / norms[:, None]

    factor = scaling_factor(folder, cfg)
    if factor != 1.0:  # as SAELens' fold_activation_norm_scaling_factor
        W_enc, W_dec, b_dec = W_enc * factor, W_dec / factor, b_dec / factor
        if W_gate is not None:
            W_gate = W_gate * factor
    if "scaling_factor" in w and not torch.allclose(w["scaling_factor"], torch.ones_like(w["scaling_factor"])):
        W_dec = W_dec * w["scaling_factor"].reshape(-1, 1)

    hook, hook_out, reads = hook_names(cfg)
    return LinearDictionary(
        W_enc=W_enc,
        b_enc=b_enc,
        W_dec=W_dec,
        b_dec=b_dec,
        activation=activation,
        k=k,
        threshold=threshold,
        input_bias=b_dec if apply_b_dec else None,
        W_gate=W_gate,
        b_gate=b_gate,
        W_skip=w["W_skip"].T if "W_skip" in w else None,
        hookpoint=hook,
        hookpoint_out=hook_out,
        reads=reads or ("input" if transcoder else "output"),
        format=LAYOUT,
        source=str(folder),
        files=(folder / CONFIG_FILE, folder / WEIGHTS_FILE) + ((folder / SCALER_FILE,) if factor != 1.0 else ()),
    )


def load_saelens(path: str | Path) -> LinearDictionary:
    """Load a SAELens folder as ``autointerp.load_saelens`` always has: a missing
    ``apply_b_dec_to_input`` reads as False (``load_dictionary`` follows SAELens' own default, True)."""
    return load(path, default_apply_b_dec=False)


SAVED_ACTIVATIONS = {"relu": "standard", "topk": "topk", "jumprelu": "jumprelu"}


def save_saelens(dictionary: LinearDictionary, path: str | Path, extra_cfg: dict | None = None) -> None:
    """Write a ReLU, TopK or JumpReLU SAE in the SAELens 6 layout (float32 weights), as
    ``scripts/train_sae.py`` saves the embedded SAE; ``extra_cfg`` is merged into cfg.json."""
    from safetensors.torch import save_file

    d = dictionary
    centred_on_b_dec = d.input_bias is None or torch.equal(d.input_bias, d.b_dec)
    if d.activation not in SAVED_ACTIVATIONS or d.reads != "output" or d.W_gate is not None or not centred_on_b_dec:
        raise AutointerpError(
            f"save_saelens cannot write {d.describe()}"
            f"{'' if centred_on_b_dec else ' centred on an input bias other than b_dec'}.",
            "an SAE (reads='output') with a relu, topk or jumprelu activation, centred on b_dec or not at all.",
        )
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {"W_enc": d.W_enc, "b_enc": d.b_enc, "W_dec": d.W_dec, "b_dec": d.b_dec}
    if d.threshold is not None:
        tensors["threshold"] = d.threshold
    save_file({k: v.detach().float().contiguous().cpu() for k, v in tensors.items()}, str(folder / WEIGHTS_FILE))
    cfg = {
        "architecture": SAVED_ACTIVATIONS[d.activation],
        "d_in": d.d_in,
        "d_sae": d.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": d.input_bias is not None,
        "normalize_activations": "none",
        "metadata": {"hook_name": d.hookpoint},
    }
    if d.activation == "topk":
        cfg["k"] = d.k
    cfg.update(extra_cfg or {})
    (folder / CONFIG_FILE).write_text(json.dumps(cfg, indent=2) + "\n")
