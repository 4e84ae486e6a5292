"""Sparse dictionaries of every common format behind one interface.

- ``load_dictionary(path, subject_model=None, hookpoint=None)``: SAELens, EleutherAI sparsify,
  Gemma Scope, Llama Scope, dictionary_learning BatchTopK; a folder, a file, a release or a hub id;
- ``mlp_neurons(model, module_name, k=None)``: the MLP neurons of the subject model;
- ``load_planted(file)`` / ``load_dictionary("planted:FILE")``: planted latents, rules over token ids with
  known descriptions and densities (docs/planted.md), alone or appended to another dictionary;
- ``Dictionary``: what they all implement (``encode``, ``encode_sparse``, ``decoder_directions``, ``to``,
  ``d_in``, ``d_sae``, ``hookpoint``, ``reads``, ``signed``);
- ``check_input_size(dictionary, width)``: the error when a hookpoint's width does not fit;
- ``resolve_module_names(dictionary, model)``: sparsify's ``layers.3`` -> the model's ``model.layers.3``.

One module per format, each saying in its docstring which files and fields it reads.
"""

from .base import Dictionary, check_input_size
from .linear import LinearDictionary
from .load import load_dictionary, resolve_module_names
from .neurons import NeuronDictionary, mlp_neurons
from .planted import PlantedAppended, PlantedDictionary, load_planted

__all__ = [
    "Dictionary",
    "LinearDictionary",
    "NeuronDictionary",
    "PlantedAppended",
    "PlantedDictionary",
    "check_input_size",
    "load_dictionary",
    "load_planted",
    "mlp_neurons",
    "resolve_module_names",
]
