"""Store explanations read from another tool as one explanation configuration of their own.

Readers (``delphi``, ``neuronpedia_import``) turn a source into an ``ImportSource``; ``store`` checks
every latent against the database's dictionary and writes the rows, the ``runs`` row included, in one
transaction, so a bad source leaves the database as it was. The configuration hash is
``import-`` + a hash of the source's file contents, the module chosen and the model recorded: the same
source imported twice is found and skipped, and ``autointerp score --explanations <hash>`` scores
exactly these explanations.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from ..config import config_hash
from ..errors import AutointerpError
from ..store import runs
from ..store.db import connect
from ..store.summary import refresh_latent_summary


@dataclass
class Imported:
    """One explanation from the source; ``text`` is None when the source says it has none."""

    latent: int
    text: str | None
    model: str
    where: str
    raw: str
    reason: str | None = None


@dataclass
class ImportSource:
    kind: str  # 'delphi' or 'neuronpedia'
    path: str
    module: str  # the module (delphi) or source id (Neuronpedia) read
    items: list[Imported]
    digest: str  # sha256 of the files read, in order
    details: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # things the user should know (duplicates, ...)


@dataclass
class ImportResult:
    run_id: str | None
    config_hash: str
    explained: int
    unparsed: int
    skipped_unknown: int
    not_ok: int
    already: bool
    notes: list[str]


class Digest:
    """sha256 over (name, content) pairs, so moving the source folder keeps its identity."""

    def __init__(self):
        self._h = hashlib.sha256()

    def add(self, name: str, data: bytes) -> None:
        for part in (name.encode(), data):
            self._h.update(len(part).to_bytes(8, "little"))
            self._h.update(part)

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def import_hash(source: ImportSource, model_override: str) -> str:
    return "import-" + config_hash(
        {"kind": source.kind, "module": source.module, "digest": source.digest, "model": model_override}
    )


def store(db, source: ImportSource, model_override: str = "", skip_unknown: bool = False) -> ImportResult:
    """Write ``source``'s explanations into ``explanation_rows`` (one transaction)."""
    if not source.items:
        raise AutointerpError(
            f"{source.path} holds no explanation to import" + (f" for {source.module}" if source.module else "") + ".",
            f"a {source.kind} folder or file with explanations.",
        )
    _check_lengths(source)
    chash = import_hash(source, model_override)
    if not Path(db).exists():  # connect() would create an empty database
        raise AutointerpError(f"No database at {db}.", "a file written by `autointerp collect` with the same SAE.")
    con = connect(db)
    try:
        n_latents = _dictionary_size(con)
        unknown = sorted({it.latent for it in source.items if not 0 <= it.latent < n_latents})
        if unknown and not skip_unknown:
            shown = ", ".join(map(str, unknown[:8])) + (f" and {len(unknown) - 8} more" if len(unknown) > 8 else "")
            raise AutointerpError(
                f"{len(unknown)} latents of {source.path} are outside this database's dictionary "
                f"of {n_latents} latents (0-{n_latents - 1}): {shown}.",
                "explanations of the SAE this database was collected with.",
                "check --module and the database, or pass --skip-unknown-latents to import the rest.",
            )
        items = [it for it in source.items if 0 <= it.latent < n_latents]
        if not items:
            raise AutointerpError(
                f"None of the {len(source.items)} latents of {source.path} is in this database's "
                f"dictionary of {n_latents} latents.",
                "explanations of the SAE this database was collected with.",
                "check --module and the database.",
            )
        hookpoint = con.execute("SELECT any_value(hookpoint) FROM latents").fetchone()[0]
        notes = source.notes + [n for n in [hookpoint_note(source, hookpoint)] if n]
        not_ok = con.execute(
            "SELECT count(*) FROM latents WHERE status <> 'ok' AND latent IN (SELECT unnest(?))",
            [[it.latent for it in items]],
        ).fetchone()[0]
        explained = sum(it.text is not None for it in items)
        unparsed = len(items) - explained
        done = con.execute(
            "SELECT run_id FROM runs WHERE stage = 'import' AND config_hash = ? AND status = 'complete'", [chash]
        ).fetchone()
        if done:
            return ImportResult(done[0], chash, explained, unparsed, len(unknown), not_ok, True, notes)
        run_id = runs.new_run_id("import")
        config = {
            "from": source.kind,
            "path": str(Path(source.path).resolve()),
            "module": source.module,
            "model": model_override,
            "skip_unknown_latents": skip_unknown,
            "resolved": {"digest": source.digest, **source.details},
        }
        summary = {
            "explained": explained,
            "unparsed": unparsed,
            "skipped_unknown": len(unknown),
            "not_ok": not_ok,
            "notes": notes,
        }
        table = pa.table(
            {
                "latent": pa.array([it.latent for it in items], pa.int32()),
                "model": pa.array([model_override or it.model for it in items], pa.string()),
                "status": pa.array(["explained" if it.text is not None else "unparsed" for it in items], pa.string()),
                "explanation": pa.array([it.text for it in items], pa.string()),
                "reason": pa.array([it.reason for it in items], pa.string()),
                "answer": pa.array([it.raw for it in items], pa.string()),
            }
        )
        con.execute("BEGIN TRANSACTION")
        try:
            runs.start_run(con, run_id, "import", config, chash)
            con.register("imported_rows", table)
            con.execute(
                "INSERT OR REPLACE INTO explanation_rows (latent, config_hash, run_id, explainer, model, "
                "status, explanation, reason, answer, call_id, n_calls, prompt_tokens, completion_tokens, "
                "created_at) "
                "SELECT latent, ?, ?, ?, model, status, explanation, reason, answer, NULL, 0, 0, 0, now() "
                "FROM imported_rows",
                [chash, run_id, f"import:{source.kind}"],
            )
            con.unregister("imported_rows")
            runs.complete_run(con, run_id, summary)
            refresh_latent_summary(con, [], in_transaction=True)  # the summary changes with the rows
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return ImportResult(run_id, chash, explained, unparsed, len(unknown), not_ok, False, notes)
    finally:
        con.close()


#: The longest explanation an import accepts: explanations are a sentence or a paragraph; megabytes
#: are a wrong file or an attack on every page and prompt that shows them.
MAX_EXPLANATION_CHARS = 10_000


def _check_lengths(source: ImportSource) -> None:
    for item in source.items:
        if item.text is not None and len(item.text) > MAX_EXPLANATION_CHARS:
            raise AutointerpError(
                f"The explanation of latent {item.latent} in {item.where} is {len(item.text):,} characters long.",
                f"explanations of at most {MAX_EXPLANATION_CHARS:,} characters.",
                "check that --path is the right file; shorten or remove that explanation.",
            )


def hookpoint_note(source: ImportSource, hookpoint: str | None) -> str | None:
    """A warning when the source's module does not look like the database's hookpoint (naming differs
    between tools, so this is a note, not an error: delphi's layers.8 is our model.layers.8)."""
    if not hookpoint or not source.module:
        return None
    if source.kind == "delphi":
        module = source.module
        if module == hookpoint or hookpoint.endswith("." + module) or module.endswith("." + hookpoint):
            return None
        return (
            f"delphi's module {module} does not name this database's hookpoint {hookpoint}; make sure the "
            "explanations describe the SAE this database was collected with"
        )
    layer = source.module.split("-", 1)[0]
    if layer.isdigit() and layer in hookpoint.split("."):
        return None
    return (
        f"the Neuronpedia source {source.module} is not at layer {layer} of this database's hookpoint "
        f"{hookpoint}; make sure the explanations describe the SAE this database was collected with"
    )


def _dictionary_size(con) -> int:
    row = con.execute(
        "SELECT c.n_latents FROM collections c JOIN runs r USING (run_id) WHERE r.status = 'complete' "
        "ORDER BY r.started_at DESC LIMIT 1"
    ).fetchone()
    if row is None:
        raise AutointerpError(
            "The database holds no complete collect.",
            "a database written by `autointerp collect`.",
            "run `autointerp collect --db PATH` with the SAE the explanations describe first.",
        )
    return row[0]
