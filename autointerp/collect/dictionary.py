"""Which dictionary ``collect`` reads, and where: the ``--sae`` spec, the hookpoint, the files' identity.

``--sae`` is one of:

- ``embedded``: the SAE this repository trained on the embedded model (data/sae-smollm2-layer14);
- a folder, file or hub id that ``load_dictionary`` reads (SAELens, sparsify, Gemma Scope, Llama Scope,
  dictionary_learning), with ``--sae-hookpoint`` naming one dictionary of a release folder;
- ``neurons:MODULE`` or ``neurons:MODULE:topk=K``: the subject model's MLP neurons at MODULE (a down
  projection, an MLP or a decoder layer), every neuron or the K of largest magnitude per token;
- ``planted:FILE``: planted latents alone (rules over token ids, docs/planted.md).

``--planted FILE`` appends planted latents to any of these, their indices after the dictionary's own.

The work is split around loading the model. What identifies the result (the spec, the requested
hookpoint, a hash of the dictionary's files) is known before it, so that a finished collect is skipped
without loading the model; the neurons, and hookpoints named relative to ``model.base_model``
(sparsify's ``layers.14``), need the model and are resolved after.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..config import EMBEDDED, CollectConfig
from ..errors import AutointerpError
from ..models import embedded
from ..models.dictionaries import Dictionary, check_input_size, load_dictionary, mlp_neurons, resolve_module_names
from ..models.dictionaries.planted import SCHEME as PLANTED_SCHEME
from ..models.dictionaries.planted import PlantedAppended, PlantedDictionary, load_planted
from ..models.subject import SubjectModel, find_module

NEURONS_PREFIX = "neurons:"
NEURONS_SYNTAX = "neurons:MODULE or neurons:MODULE:topk=K (K > 0), e.g. neurons:model.layers.14.mlp:topk=32"


@dataclass(frozen=True)
class NeuronSpec:
    module: str
    k: int | None  # None: every neuron


def parse_neurons(spec: str) -> NeuronSpec | None:
    """``neurons:MODULE[:topk=K]`` -> NeuronSpec; any other spec (a path, a hub id) -> None."""
    if not spec.startswith(NEURONS_PREFIX):
        return None
    module, *options = spec[len(NEURONS_PREFIX) :].split(":")
    k = None
    if options:
        key, _, value = options[0].partition("=")
        k = int(value) if key == "topk" and value.isdigit() and int(value) > 0 else None
    if not module or len(options) > 1 or (options and k is None):
        raise AutointerpError(f"--sae {spec!r} is not a neuron baseline.", NEURONS_SYNTAX + ".")
    return NeuronSpec(module, k)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def files_sha256(files: tuple[str, ...]) -> str:
    """One hash of a dictionary's files (configuration and weights), by file name and content."""
    digest = hashlib.sha256()
    for name, sha in sorted((Path(f).name, file_sha256(Path(f))) for f in files):
        digest.update(f"{name}\0{sha}\n".encode())
    return digest.hexdigest()


@dataclass
class Request:
    """What ``--sae`` asks for, known before the model is loaded."""

    neurons: NeuronSpec | None
    dictionary: Dictionary | None  # None for neurons: they are made from the loaded model
    sha256: str | None  # of the dictionary's files; None for neurons (the model's own weights)
    hookpoint: str  # --hookpoint, else the dictionary's own name (maybe relative), else ''
    planted: PlantedDictionary | None = None  # --planted: appended when attached

    def identity(self) -> dict:
        """The parts of the result's identity that the configuration alone does not give."""
        return {"hookpoint": self.hookpoint, "sae": self.sha256}


def request(config: CollectConfig) -> Request:
    """Parse ``--sae`` and load a dictionary from files (neurons wait for the model)."""
    neurons = parse_neurons(config.sae)
    planted = _appended_planted(config)
    if neurons is not None:
        for option in ("hookpoint", "sae_hookpoint"):
            if getattr(config, option):
                raise AutointerpError(
                    f"--{option.replace('_', '-')} {getattr(config, option)!r} was given with --sae {config.sae}.",
                    "the module named once, in --sae neurons:MODULE.",
                    f"leave --{option.replace('_', '-')} out.",
                )
        sha = files_sha256(planted.files) if planted else None
        return Request(neurons, None, sha, neurons.module, planted)
    path = embedded.DEFAULT_SAE_DIR if config.sae == EMBEDDED else config.sae
    dictionary = load_dictionary(path, hookpoint=config.sae_hookpoint or None)
    files = tuple(dictionary.files) + (tuple(planted.files) if planted else ())
    return Request(None, dictionary, files_sha256(files), config.hookpoint or dictionary.hookpoint, planted)


def _appended_planted(config: CollectConfig) -> PlantedDictionary | None:
    """The --planted file's dictionary (read and checked now, before anything is stored), or None."""
    if not config.planted:
        return None
    if config.sae.startswith(PLANTED_SCHEME):
        raise AutointerpError(
            f"--planted {config.planted} was given with --sae {config.sae}.",
            "one planted file: --sae planted:FILE alone, or --planted FILE after another dictionary.",
            "put every planted latent in one file.",
        )
    return load_planted(config.planted)


def attach(req: Request, config: CollectConfig, subject: SubjectModel) -> tuple[Dictionary, str]:
    """Make the dictionary (neurons) or resolve its hookpoint, hook the subject model there on the side
    the dictionary reads, and check the width of what is read. Returns (dictionary, hookpoint)."""
    if req.neurons is not None:
        find_module(subject.model, req.neurons.module)  # a clear error with the nearest names
        dictionary = mlp_neurons(subject, req.neurons.module, req.neurons.k)
        hookpoint = dictionary.hookpoint
    else:
        dictionary = req.dictionary
        hookpoint = resolve_hookpoint(config, dictionary, subject)
    if req.planted is not None:
        dictionary = PlantedAppended(dictionary, req.planted)
    subject.attach(hookpoint, dictionary.reads)
    if isinstance(dictionary, PlantedDictionary):
        dictionary.d_in = subject.read_width()  # it reads token ids, whatever the hookpoint's width
    check_input_size(dictionary, subject.read_width(), hookpoint, subject.name)
    return dictionary, hookpoint


def resolve_hookpoint(config: CollectConfig, dictionary: Dictionary, subject: SubjectModel) -> str:
    """--hookpoint; else the dictionary's own hookpoint when it names a module of the model; else the
    embedded default for the embedded model (dictionaries reading a module's output only)."""
    if config.hookpoint:
        find_module(subject.model, config.hookpoint)
        return config.hookpoint
    resolve_module_names(dictionary, subject)
    if dictionary.hookpoint and dictionary.hookpoint in dict(subject.model.named_modules()):
        return dictionary.hookpoint
    if config.model == EMBEDDED and dictionary.reads == "output":
        return embedded.DEFAULT_HOOKPOINT
    named = (
        f"the dictionary's hookpoint {dictionary.hookpoint!r} is not a module of {subject.name}"
        if dictionary.hookpoint
        else "the dictionary's files name no hookpoint"
    )
    raise AutointerpError(
        f"No --hookpoint given and {named}.",
        f"--hookpoint naming the module whose {dictionary.reads} the dictionary reads, e.g. model.layers.12"
        f"{'.mlp' if dictionary.reads == 'input' else ''}.",
        "pass --hookpoint (module names as in model.named_modules()).",
    )


def describe(req: Request, dictionary: Dictionary, config: CollectConfig) -> dict:
    """The resolved facts about the dictionary, stored with the run's configuration."""
    source = config.sae if req.neurons is not None else str(Path(dictionary.source).resolve())
    planted = {}
    if isinstance(dictionary, PlantedAppended):  # the SAE's own files, as the intervention scorers reload them
        base = dictionary.base
        own_sha = files_sha256(base.files) if base.files and req.neurons is None else None
        planted = {"planted_path": str(Path(dictionary.planted.source).resolve()), "sae_own_sha256": own_sha}
    return {
        **planted,
        "sae_path": source,
        "sae_sha256": req.sha256,
        "sae_files": [Path(f).name for f in dictionary.files],
        "dictionary": dictionary.describe(),
        "format": dictionary.format,
        "reads": dictionary.reads,
        "signed": dictionary.signed,
        "d_sae": dictionary.d_sae,
    }
