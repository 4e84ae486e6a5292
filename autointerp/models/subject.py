"""The subject model: load any Hugging Face causal LM and read one module's output or input.

The forward pass stops at the hookpoint: a forward hook stores the module's output (or a forward
pre-hook its input, for transcoders and MLP neurons) and raises, so no later layer (and no LM head) is
ever computed; when the input is read, the module itself does not run either.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import AutointerpError
from . import embedded

READS = ("output", "input")

log = logging.getLogger(__name__)


class _StopForward(Exception):
    """Raised by the hook to end the forward pass at the hookpoint."""


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise AutointerpError(f"--device {device!r} is not a torch device.", "auto, cpu, cuda or cuda:N.") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AutointerpError(
            f"--device {device} was asked for but no CUDA GPU is visible.", fix="pass --device cpu or --device auto."
        )
    return dev


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 instructions (AVX512-BF16 or AMX); without them bf16 matmuls are
    emulated and about 3x slower than float32 (measured on this project's 2-core CI machine)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype != "auto":
        return getattr(torch, dtype)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


@dataclass
class SubjectModel:
    """A causal LM, its tokenizer, and a hookpoint whose output (``reads='output'``) or input
    (``reads='input'``) ``read`` returns. An empty hookpoint means none yet: call ``attach``."""

    model: torch.nn.Module
    tokenizer: object
    name: str
    hookpoint: str
    device: torch.device
    dtype: torch.dtype
    reads: str = "output"

    def __post_init__(self) -> None:
        self._captured: torch.Tensor | None = None
        self._reading = False
        self._handle = None
        if self.hookpoint:
            self.attach(self.hookpoint, self.reads)

    def attach(self, hookpoint: str, reads: str = "output") -> None:
        """Read ``hookpoint``'s output or input from now on (replacing any earlier hookpoint)."""
        if reads not in READS:
            raise AutointerpError(f"reads={reads!r} is not known.", "'output' or 'input'.")
        module = find_module(self.model, hookpoint)
        if self._handle is not None:
            self._handle.remove()
        if reads == "input":
            self._handle = module.register_forward_pre_hook(self._pre_hook, with_kwargs=True)
        else:
            self._handle = module.register_forward_hook(self._hook)
        self.hookpoint, self.reads = hookpoint, reads

    def _hook(self, module, inputs, output):  # noqa: ARG002 - torch hook signature
        if self._reading:  # other forward passes (generation, full runs) go through untouched
            self._captured = output[0] if isinstance(output, tuple) else output
            raise _StopForward

    def _pre_hook(self, module, args, kwargs):  # noqa: ARG002 - torch hook signature
        if self._reading:
            # the first positional argument; modules called with keywords only: the first tensor one
            first = args[0] if args else next((v for v in kwargs.values() if isinstance(v, torch.Tensor)), None)
            self._captured = first
            raise _StopForward

    @torch.inference_mode()
    def read(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The hookpoint's output (or input) for a batch of token ids, shape [batch, seq, width]."""
        if self._handle is None:
            raise AutointerpError("The subject model has no hookpoint to read.", "attach(hookpoint) first.")
        self._captured = None
        self._reading = True
        try:
            self.model(
                input_ids=input_ids.to(self.device),
                attention_mask=None if attention_mask is None else attention_mask.to(self.device),
                use_cache=False,
            )
        except _StopForward:
            pass
        finally:
            self._reading = False
        if self._captured is None:
            raise AutointerpError(
                f"The hookpoint {self.hookpoint} was not reached by the forward pass (or gave no tensor {self.reads}).",
                "a module that runs on every forward pass (a layer, not a head).",
            )
        out, self._captured = self._captured, None
        return out

    def read_width(self) -> int:
        """Width of what ``read`` returns (the hookpoint's output or input), measured with a two-token
        forward pass."""
        return int(self.read(torch.tensor([[0, 1]])).shape[-1])

    def special_token_ids(self) -> list[int]:
        return sorted(set(getattr(self.tokenizer, "all_special_ids", []) or []))


def find_module(model: torch.nn.Module, hookpoint: str) -> torch.nn.Module:
    names = [n for n, _ in model.named_modules() if n]
    modules = dict(model.named_modules())
    if hookpoint in modules and hookpoint:
        return modules[hookpoint]
    nearest = difflib.get_close_matches(hookpoint, names, n=5, cutoff=0.3)
    if not nearest:
        nearest = names[:5]
    raise AutointerpError(
        f"The model has no module named {hookpoint!r}.",
        "the dotted name of a module, as in model.named_modules().",
        "nearest names: " + ", ".join(nearest),
    )


def load_subject_model(
    name: str, hookpoint: str, device: str = "auto", dtype: str = "auto", reads: str = "output"
) -> SubjectModel:
    """Load ``name`` (hub id, local folder or "embedded") with a hook reading ``hookpoint``'s output or
    input (``reads``); an empty ``hookpoint`` loads the model without one (see ``SubjectModel.attach``)."""
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    if name == embedded.EMBEDDED:
        model, tokenizer = embedded.load_smollm2(torch_dtype)
        display = embedded.SMOLLM2_NAME
    else:
        model, tokenizer = _load_hf(name, torch_dtype)
        display = name
    model.to(dev).eval()
    log.info("loaded %s on %s in %s", display, dev, torch_dtype)
    return SubjectModel(model, tokenizer, display, hookpoint, dev, torch_dtype, reads)


def _load_hf(name: str, torch_dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=torch_dtype)
    except OSError as exc:
        local = Path(name).exists()
        raise AutointerpError(
            f"Could not load the model {name!r}: {exc}",
            "a local folder with config.json and weights, or a hub id reachable from this machine.",
            "check the path"
            if local
            else "download it on a machine with internet access and pass the local folder with --model.",
        ) from exc
    return model, tokenizer
