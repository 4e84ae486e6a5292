"""Read explanations exported by Neuronpedia, or by ``autointerp export --format neuronpedia``.

Accepted: one file (``.jsonl``, ``.jsonl.gz``, ``.json``, ``.json.gz``) or a folder. A folder with
``explanations/`` sub-folders (Neuronpedia's bulk layout ``<modelId>/<source>/explanations/batch-<n>
.jsonl.gz``, which ours mirrors) is read from those only, so features and activations beside them are
ignored; another folder is read whole. Records are ``Explanation`` rows: ``modelId``, ``layer`` (the
source id), ``index`` (a string in Neuronpedia's schema, the latent), ``description`` (the
explanation), ``explanationModelName``, ``typeName``; a ``.json`` file may hold a list of them or an
object with an ``explanations`` list (the answer of Neuronpedia's former export API).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from .. import jsonio
from ..errors import AutointerpError
from .files import is_json_file, json_records, natural_key, read_bytes
from .importer import Digest, Imported, ImportSource


def explanation_files(path: Path) -> list[Path]:
    if not path.exists():
        raise AutointerpError(
            f"No file or folder at {path}.",
            "a Neuronpedia explanations export: a .jsonl[.gz] / .json file or a folder of them.",
        )
    if path.is_file():
        return [path]
    roots = [path] if path.name == "explanations" else [p for p in path.rglob("explanations") if p.is_dir()] or [path]
    files = sorted({f for root in roots for f in root.rglob("*") if is_json_file(f)}, key=natural_key)
    if not files:
        raise AutointerpError(
            f"{path} holds no .jsonl, .jsonl.gz, .json or .json.gz file.",
            "Neuronpedia's explanation batches (explanations/batch-<n>.jsonl.gz) or our export.",
        )
    return files


def _latent(value, where: str) -> int:
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.isdigit())):
        raise AutointerpError(
            f"{where}: index {value!r} is not a latent index.",
            'a non-negative integer, or a string of digits as Neuronpedia writes it ("123").',
        )
    return int(value)


def read_neuronpedia(path, module: str = "", model: str = "") -> ImportSource:
    """Explanations of one source (``layer``) of a Neuronpedia export."""
    path = Path(path)
    digest, records = Digest(), []
    for file in explanation_files(path):
        data = read_bytes(file)
        digest.add(str(file.relative_to(path)) if file != path else file.name, data)
        for where, record in json_records(file, data):
            if not isinstance(record, dict) or "description" not in record or "index" not in record:
                raise AutointerpError(
                    f"{where} is not a Neuronpedia explanation record.",
                    'a JSON object with at least "index" and "description" '
                    '(and "modelId", "layer", "explanationModelName").',
                    "point --path at the explanations (not activations or features).",
                )
            records.append((where, record, _latent(record["index"], where)))
    groups = Counter(f"{r.get('modelId') or '?'}/{r.get('layer') or '?'}" for _, r, _ in records)
    if module:
        chosen = [g for g in groups if module in (g, g.split("/", 1)[1])]
        if len(chosen) != 1:
            problem = "matches several sources" if chosen else "is not in the export"
            raise AutointerpError(
                f"--module {module!r} {problem} of {path}.",
                "one of: " + ", ".join(sorted(groups)),
                "pass the source id (layer) or modelId/layer.",
            )
    elif len(groups) > 1:
        raise AutointerpError(
            f"{path} holds explanations of {len(groups)} sources: {', '.join(sorted(groups))}.",
            "one source (SAE) per import.",
            "pass --module with the source id (layer).",
        )
    else:
        chosen = list(groups)
    group = chosen[0]
    records = [(w, r, i) for w, r, i in records if f"{r.get('modelId') or '?'}/{r.get('layer') or '?'}" == group]
    models = Counter(r.get("explanationModelName") for _, r, _ in records if r.get("explanationModelName"))
    if model and models:
        records = [(w, r, i) for w, r, i in records if r.get("explanationModelName") == model]
        if not records:
            raise AutointerpError(
                f"--model {model!r}: no explanation of {group} was written by it.",
                "one of the explainer models in the export: " + ", ".join(sorted(models)),
            )
    digest.add("selection", json.dumps([group, model]).encode())
    items, seen, duplicates = [], set(), 0
    for where, record, latent in records:
        if latent in seen:
            duplicates += 1
            continue
        seen.add(latent)
        text = record["description"]
        if text is not None and not isinstance(text, str):
            raise AutointerpError(f"{where}: description is a JSON {type(text).__name__}.", "a string.")
        text = (text or "").strip()
        raw = jsonio.dumps({k: v for k, v in record.items() if k != "embedding"})
        items.append(
            Imported(
                latent,
                text or None,
                record.get("explanationModelName") or model or "unknown",
                where,
                raw,
                None if text else "the explanation is empty",
            )
        )
    notes = []
    if duplicates:
        notes.append(
            f"{duplicates} further explanations of latents already read were left out (the first in file "
            "order is kept)"
            + (
                f"; explainer models: {', '.join(sorted(models))}, choose one with --model"
                if len(models) > 1 and not model
                else ""
            )
        )
    return ImportSource(
        "neuronpedia",
        str(path),
        group.split("/", 1)[1],
        items,
        digest.hexdigest(),
        {"source": group, "explainer_models": dict(models), "records": len(records)},
        notes,
    )
