"""Read the explanations of an EleutherAI delphi results folder.

delphi (``delphi/__main__.py``) saves each explanation as ``results/<name>/explanations/<latent>.txt``,
where ``<latent>`` prints as ``<module>_latent<index>`` (``Latent.__repr__`` in
``delphi/latents/latents.py``, e.g. ``layers.8_latent123.txt``) and the file holds the explanation as
one JSON string (``orjson.dumps(result.explanation)``). An answer it could not parse is saved as the
string "Explanation could not be parsed."; we keep such latents as ``unparsed``, never as an
explanation. ``run_config.json`` next to ``explanations/`` names the explainer model
(``explainer_model``). Scores in ``scores/<scorer>/`` are delphi's own and are not imported: scoring
here gives numbers comparable with ours.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .. import jsonio
from ..errors import AutointerpError
from .files import natural_key
from .importer import Digest, Imported, ImportSource

FILE = re.compile(r"^(?P<module>.+)_latent(?P<index>\d+)\.txt$")
UNPARSED = {
    "Explanation could not be parsed.": "delphi could not parse its explainer's answer",
    "No explanation found": "delphi found no explanation for this latent",
}


def explanations_dir(path: Path) -> Path:
    if not path.exists():
        raise AutointerpError(f"No file or folder at {path}.", "a delphi results folder (results/<run name>).")
    if (path / "explanations").is_dir():
        return path / "explanations"
    if path.is_dir() and any(FILE.match(p.name) for p in path.iterdir()):
        return path
    raise AutointerpError(
        f"{path} is not a delphi results folder: it has no explanations/ folder and no <module>_latent<N>.txt files.",
        "the folder delphi wrote (results/<run name>, holding explanations/ and scores/), or its explanations/ folder.",
    )


def explainer_model(folder: Path) -> str:
    """The explainer model named in run_config.json of the results folder, or ''."""
    for candidate in (folder.parent / "run_config.json", folder.parent.parent / "run_config.json"):
        if candidate.is_file():
            try:
                value = json.loads(candidate.read_text()).get("explainer_model", "")
            except (json.JSONDecodeError, AttributeError, OSError) as exc:
                raise AutointerpError(
                    f"{candidate} is not a readable JSON object: {exc}",
                    "the run_config.json delphi writes.",
                    "fix it, or pass --model.",
                ) from exc
            return value if isinstance(value, str) else ""
    return ""


def read_delphi(path, module: str = "", model: str = "") -> ImportSource:
    """Explanations of one module of a delphi results folder."""
    folder = explanations_dir(Path(path))
    by_module: dict[str, list[tuple[int, Path]]] = {}
    for file in folder.iterdir():
        if file.name.startswith(".") or not file.is_file():
            continue
        match = FILE.match(file.name)
        if not match:
            if file.suffix == ".txt":
                raise AutointerpError(
                    f"{file} is not named <module>_latent<N>.txt.",
                    "delphi's explanation files, e.g. layers.8_latent123.txt.",
                    "remove or rename the file.",
                )
            continue
        by_module.setdefault(match["module"], []).append((int(match["index"]), file))
    if not by_module:
        raise AutointerpError(f"{folder} holds no explanation file.", "files named <module>_latent<N>.txt.")
    if not module:
        if len(by_module) > 1:
            raise AutointerpError(
                f"{folder} holds explanations of {len(by_module)} modules: {', '.join(sorted(by_module))}.",
                "one module per import.",
                "pass --module with one of them.",
            )
        module = next(iter(by_module))
    if module not in by_module:
        raise AutointerpError(
            f"--module {module!r} has no explanation in {folder}.", "one of: " + ", ".join(sorted(by_module))
        )
    recorded = model or explainer_model(folder) or "unknown"
    digest, items, seen = Digest(), [], {}
    digest.add("explainer_model", recorded.encode())
    for latent, file in sorted(by_module[module], key=lambda pair: natural_key(pair[1])):
        if latent in seen:
            raise AutointerpError(
                f"{seen[latent].name} and {file.name} both hold latent {latent} of {module}.",
                "one explanation file per latent.",
                "remove one of them.",
            )
        seen[latent] = file
        data = file.read_bytes()
        digest.add(file.name, data)
        try:
            value = jsonio.loads(data)  # also refuses bytes that are not UTF-8
        except jsonio.JSONDecodeError as exc:
            raise AutointerpError(
                f"{file} is not valid JSON: {exc}",
                'one JSON string, as delphi writes it (e.g. "mentions of rivers").',
                "fix or remove the file.",
            ) from exc
        if not isinstance(value, str):
            raise AutointerpError(
                f"{file} holds a JSON {type(value).__name__}, not a string.",
                'one JSON string, as delphi writes it (e.g. "mentions of rivers").',
            )
        text = value.strip()
        reason = UNPARSED.get(text) or (None if text else "the explanation is empty")
        items.append(Imported(latent, None if reason else text, recorded, str(file), data.decode("utf-8"), reason))
    return ImportSource(
        "delphi",
        str(Path(path)),
        module,
        items,
        digest.hexdigest(),
        {"files": len(items), "modules": sorted(by_module), "explainer_model": recorded},
    )
