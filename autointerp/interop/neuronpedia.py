"""Export to Neuronpedia's bulk-export layout, with Neuronpedia's own field names.

Neuronpedia publishes each source (an SAE at one layer, e.g. ``14-res-jb``) as
``<modelId>/<source>/{features,explanations,activations}/batch-<n>.jsonl[.gz]``, one JSON object per
line whose keys are the columns of its ``Neuron``, ``Explanation`` and ``Activation`` tables
(apps/webapp/prisma/schema.prisma and utils/neuronpedia-utils/neuronpedia_utils/export-data.py in
hijohnnylin/neuronpedia). We write the same layout so the files can be loaded into a Neuronpedia
instance or compared with its exports. The mapping of each field is in docs/interop.md.

Latents are read in chunks and each record goes straight to its batch file, so memory does not grow
with the number of latents.
"""

from __future__ import annotations

import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..config import parse_latent_ranges
from ..errors import AutointerpError
from ..store.db import connect
from .files import BatchWriter, partial_name, refuse_existing, replace_dir

CHUNK = 256  # latents read from the database at once
KINDS = ("features", "explanations", "activations")
NAME = re.compile(r"^[A-Za-z0-9._-]+$")
SOURCE = re.compile(r"^[0-9]+-[A-Za-z0-9._-]+$")


@dataclass
class NeuronpediaExport:
    folder: Path
    model_id: str
    model_id_from: str
    source: str
    records: dict[str, int] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)


def model_id_from_name(name: str) -> str:
    """A Neuronpedia-style model id from a model name: the last path component of a hub id or folder,
    without a parenthesised note, lower-cased, other characters than letters, digits, '.', '_' and
    '-' replaced by '-' (``google/gemma-2-2b`` -> ``gemma-2-2b``)."""
    base = re.sub(r"\s*\(.*\)\s*$", "", name.strip()).rstrip("/").split("/")[-1]
    return re.sub(r"[^a-z0-9._-]+", "-", base.lower()).strip("-")


def histogram_bars(counts: list[int], edges: list[float]) -> tuple[list[float], list[int]]:
    """(bar positions, bar heights) of the non-empty bins of a latents.histogram: bin 0 is (0, e0) and
    stands at e0/2, bin i at the geometric middle of [e(i-1), e(i)), the last bin [e(n), inf) at e(n)."""
    values, heights = [], []
    for i, count in enumerate(counts):
        if not count:
            continue
        if i == 0:
            position = edges[0] / 2
        elif i <= len(edges) - 1:
            position = math.sqrt(edges[i - 1] * edges[i])
        else:
            position = edges[-1]
        values.append(position)
        heights.append(int(count))
    return values, heights


def _finite(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def _check_names(source: str, model_id: str) -> None:
    if not source:
        raise AutointerpError(
            "--format neuronpedia needs --source.",
            "the Neuronpedia source (SAE) id, <layer>-<set name>, e.g. 14-res-autointerp.",
            "pass --source 14-res-myname (the layer number the SAE reads, then a name).",
        )
    if not SOURCE.match(source):
        raise AutointerpError(
            f"--source {source!r} is not a Neuronpedia source id.",
            "<layer number>-<set name> of letters, digits, '.', '_' or '-', e.g. 14-res-autointerp.",
        )
    if not NAME.match(model_id):
        raise AutointerpError(
            f"--model-id {model_id!r} is not a Neuronpedia model id.",
            "letters, digits, '.', '_' or '-', e.g. gemma-2-2b.",
        )


def collect_info(con) -> tuple[str, str]:
    """(model name, dataset) of the database's complete collect."""
    row = con.execute(
        "SELECT c.model, c.dataset FROM collections c JOIN runs r USING (run_id) "
        "WHERE r.status = 'complete' ORDER BY r.started_at DESC LIMIT 1"
    ).fetchone()
    if row is None:
        raise AutointerpError(
            "The database holds no complete collect.",
            "a database written by `autointerp collect`.",
            "run `autointerp collect --db PATH` first.",
        )
    return row


def export_neuronpedia(
    db,
    out,
    source: str,
    model_id: str = "",
    latents: str = "",
    batch_size: int = 1024,
    overwrite: bool = False,
    explanations: str = "",
    creator_id: str = "",
    type_name: str = "",
    compress: bool = False,
) -> NeuronpediaExport:
    """Write ``<out>/<modelId>/<source>/{features,explanations,activations}/batch-<n>.jsonl``."""
    if batch_size <= 0:
        raise AutointerpError(f"--batch-size is {batch_size}.", "a positive number of records per file.")
    con = connect(db, read_only=True)
    try:
        model_name, dataset = collect_info(con)
        derived = model_id_from_name(model_name)
        result = NeuronpediaExport(
            Path(), model_id or derived, "--model-id" if model_id else f"the collect's model {model_name!r}", source
        )
        _check_names(source, result.model_id)
        if (
            explanations
            and not con.execute("SELECT count(*) FROM explanations WHERE config_hash = ?", [explanations]).fetchone()[0]
        ):
            known = [r[0] for r in con.execute("SELECT DISTINCT config_hash FROM explanations ORDER BY 1").fetchall()]
            raise AutointerpError(
                f"--explanations {explanations}: no explanation has this configuration hash.",
                "one of: " + (", ".join(known) or "(none: the database has no explanations)"),
            )
        ranges = parse_latent_ranges(latents)
        todo = [
            r[0]
            for r in con.execute("SELECT latent FROM latents ORDER BY latent").fetchall()
            if not ranges or any(lo <= r[0] <= hi for lo, hi in ranges)
        ]
        if ranges and not todo:
            raise AutointerpError(f"--latents {latents} selects no latent of this database.")
        final = Path(out) / result.model_id / source
        refuse_existing([final], overwrite)
        final.parent.mkdir(parents=True, exist_ok=True)
        staged = partial_name(final)
        shutil.rmtree(staged, ignore_errors=True)
        writers = {kind: BatchWriter(staged / kind, batch_size, compress) for kind in KINDS}
        common = {"modelId": result.model_id, "layer": source}
        extra = {"creatorId": creator_id} if creator_id else {}
        try:
            cur = con.cursor()
            for i in range(0, len(todo), CHUNK):
                chunk = todo[i : i + CHUNK]
                maxima = _write_features(cur, chunk, common, extra, writers["features"])
                _write_explanations(cur, chunk, common, creator_id, type_name, explanations, writers["explanations"])
                _write_activations(cur, chunk, common, extra, dataset, maxima, writers["activations"])
            cur.close()
            for writer in writers.values():
                writer.close()
            replace_dir(staged, final)
        except BaseException:
            for writer in writers.values():
                writer.abort()
            shutil.rmtree(staged, ignore_errors=True)
            raise
        result.folder = final
        result.records = {kind: w.records for kind, w in writers.items()}
        result.files = {kind: len(w.files) for kind, w in writers.items()}
        return result
    finally:
        con.close()


def _logits(cur, chunk) -> dict[tuple[int, str], tuple[list[str], list[float]]]:
    """(latent, sign) -> (tokens, logits) of the logit lens in rank order: Neuronpedia's pos_/neg_ fields.
    A database collected before the lens existed (schema < 12, opened read-only, never migrated) has none."""
    has_view = cur.execute(
        "SELECT count(*) FROM duckdb_views() WHERE view_name = 'latent_logits' AND NOT internal"
    ).fetchall()[0][0]
    if not has_view:
        return {}
    rows = cur.execute(
        "SELECT latent, sign, list(token ORDER BY rank), list(value ORDER BY rank) FROM latent_logits "
        "WHERE sign IN ('promoted', 'suppressed') AND latent IN (SELECT unnest(?)) GROUP BY latent, sign",
        [chunk],
    ).fetchall()
    return {(latent, sign): (tokens, values) for latent, sign, tokens, values in rows}


def _write_features(cur, chunk, common, extra, writer) -> dict[int, tuple[float, list[float]]]:
    """One ``Neuron`` record per latent; returns latent -> (max activation, quantile edges)."""
    maxima = {}
    lens = _logits(cur, chunk)
    for latent, max_act, frequency, hist, edges, q_edges in cur.execute(
        "SELECT latent, max_activation, frequency, histogram, histogram_edges, quantile_edges FROM latents "
        "WHERE latent IN (SELECT unnest(?)) ORDER BY latent",
        [chunk],
    ).fetchall():
        maxima[latent] = (max_act, q_edges)
        bar_values, bar_heights = histogram_bars(hist, edges)
        # the logit lens: promoted tokens strongest first, suppressed most negative first (empty when the lens
        # does not apply to the latent, as Neuronpedia's own default)
        pos_str, pos_values = lens.get((latent, "promoted"), ([], []))
        neg_str, neg_values = lens.get((latent, "suppressed"), ([], []))
        writer.write(
            {
                **common,
                "index": str(latent),
                "maxActApprox": max_act,
                "frac_nonzero": frequency,
                "freq_hist_data_bar_values": bar_values,
                "freq_hist_data_bar_heights": bar_heights,
                "pos_str": pos_str,
                "pos_values": pos_values,
                "neg_str": neg_str,
                "neg_values": neg_values,
                **extra,
            }
        )
    return maxima


def _write_explanations(cur, chunk, common, creator_id, type_name, only_hash, writer) -> None:
    sql = (
        "SELECT latent, explanation, explainer, model, config_hash FROM explanations WHERE status = 'explained' "
        "AND latent IN (SELECT unnest(?))"
        + (" AND config_hash = ?" if only_hash else "")
        + " ORDER BY latent, created_at, config_hash"
    )
    params = [chunk] + ([only_hash] if only_hash else [])
    for latent, text, explainer, model, chash in cur.execute(sql, params).fetchall():
        record = {
            "id": f"{chash}-{latent}",
            **common,
            "index": str(latent),
            "description": text,
            "typeName": type_name or "autointerp_" + explainer.replace(":", "-"),
            "explanationModelName": model,
            "notes": f"autointerp explanation: explainer {explainer}, configuration {chash}",
        }
        if creator_id:
            record["authorId"] = creator_id
        writer.write(record)


def _write_activations(cur, chunk, common, extra, dataset, maxima, writer) -> None:
    """One ``Activation`` record per top and quantile context (random contexts are all zero)."""
    for latent, kind, quantile, context_id, tokens, values, sequence_id in cur.execute(
        "SELECT latent, kind, quantile, context_id, tokens, activations, sequence_id FROM examples "
        "WHERE kind IN ('top', 'quantile') AND latent IN (SELECT unnest(?)) "
        "ORDER BY latent, kind = 'top' DESC, quantile DESC, max_activation DESC, rank",
        [chunk],
    ).fetchall():
        max_act, q_edges = maxima[latent]
        top = max(values)
        if kind == "top":  # SAEDashboard's convention for the top-activations group
            bin_min, bin_max, bin_contains = -1.0, max_act, -1.0
        else:
            bin_min = q_edges[quantile]
            bin_max = q_edges[quantile + 1] if quantile + 1 < len(q_edges) else max_act
            bin_contains = 1.0 / len(q_edges)
        writer.write(
            {
                "id": f"{common['modelId']}-{common['layer']}-{latent}-{context_id}",
                **common,
                "index": str(latent),
                "tokens": tokens,
                "values": values,
                "maxValue": top,
                "maxValueTokenIndex": values.index(top),
                "minValue": min(values),
                "dataSource": dataset,
                "dataIndex": str(sequence_id),
                "binMin": _finite(bin_min),
                "binMax": _finite(bin_max),
                "binContains": bin_contains,
                **extra,
            }
        )
