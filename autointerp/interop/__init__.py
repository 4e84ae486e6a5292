"""Exchange results with other tools.

Export: every public view as Parquet (``parquet``), and Neuronpedia's own bulk-export layout of
features, explanations and activations as JSONL batches (``neuronpedia``). Import: explanations
written by EleutherAI's delphi (``delphi``) or exported by Neuronpedia (``neuronpedia``), stored as an
explanation configuration of their own so ``autointerp score --explanations HASH`` scores them
(``importer``). Field mappings: docs/interop.md.
"""
