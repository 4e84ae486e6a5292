"""Best-of-k and refinement (issue 19 items 3-7) through the openai backend, against a real HTTP server
whose scripted backend writes known candidates and judges excerpts by which split they come from: the
selection logic is what is tested (which candidate is chosen, what is stored, what a rerun sends), never
a figure we report."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autointerp.cli import main
from autointerp.config import ExplainConfig, ScoreConfig
from autointerp.explain.refine import refine_messages
from autointerp.explain.stage import explain
from autointerp.llm.base import Backend, Completion
from autointerp.models.special import collect_special_ids
from autointerp.score.classifier import NEGATIVE_KINDS, excerpt_text
from autointerp.score.stage import score
from autointerp.store.db import connect
from autointerp.store.runs import latest_collect_config
from autointerp.store.splits import validate_sizes
from autointerp.text import hide_special

from .conftest import SMALL, query
from .openai_server import ModelServer

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden"
_LINE = re.compile(r"^(\d+) (.*)$", re.M)


VALIDATE = ["--validate-per-quantile", "1", "--random-validate", "2"]


@pytest.fixture(scope="module")
def validate_collected(tmp_path_factory):
    """A collect on the embedded default with a validate split (the session's small collect, plus
    validate quotas)."""
    path = tmp_path_factory.mktemp("validate") / "validate.duckdb"
    args = ["collect", "--db", str(path), "--quiet", *VALIDATE]
    for key, value in SMALL.items():
        args += ["--" + key.replace("_", "-"), str(value)]
    assert main(args) == 0
    return path


def first_validated(db, n: int = 1) -> list[int]:
    """The first ``n`` explainable latents with both activating and non-activating validate contexts."""
    con = connect(db)
    try:
        sizes = validate_sizes(
            con, [r[0] for r in con.execute("SELECT latent FROM latents WHERE status = 'ok'").fetchall()]
        )
    finally:
        con.close()
    return sorted(lat for lat, (pos, neg) in sizes.items() if pos >= 2 and neg >= 2)[:n]


def split_labels(db, latent: int) -> dict[str, tuple[str, bool]]:
    """Each validate and test excerpt of ``latent`` as the detection prompt shows it -> (split, activating)
    (one latent: a context activating for one latent may be a negative of another)."""
    con = connect(db)
    try:
        special = collect_special_ids(latest_collect_config(con))
        rows = con.execute(
            "SELECT split, kind, tokens, token_ids FROM examples WHERE split IN ('validate', 'test') AND latent = ?",
            [latent],
        ).fetchall()
    finally:
        con.close()
    return {
        excerpt_text(hide_special(t, ids, special)): (split, kind not in NEGATIVE_KINDS) for split, kind, t, ids in rows
    }


class ScriptedSelection(Backend):
    """Candidates by seed, revisions by what the refine prompt already lists, and a judge that answers
    each excerpt right, wrong or always 1, by the explanation and the split the excerpt comes from."""

    kind, model = "scripted", "scripted"

    def __init__(self, labels, candidates: dict[int | None, str], revisions: list[str], judge: dict):
        self.labels, self.candidates, self.revisions, self.judge = labels, candidates, revisions, judge
        self.prompts: list[str] = []

    async def generate(self, messages, options) -> Completion:
        last = messages[-1]["content"]
        self.prompts.append(json.dumps(messages))
        if "Revise your description" in last:
            text = next((r for r in self.revisions if r not in last), self.revisions[-1])
            answer = f"[EXPLANATION]: {text}"
        elif "[EXPLANATION]" in messages[0]["content"]:
            answer = f"[EXPLANATION]: {self.candidates[options.seed]}"
        else:
            explanation = last.split("\n", 1)[0].removeprefix("Explanation: ")
            digits = []
            for _, text in _LINE.findall(last.split("Excerpts:", 1)[1]):
                split, label = self.labels.get(text, ("test", False))
                mode = self.judge[explanation][split]
                digits.append(1 if mode == "yes" else int(label) if mode == "right" else 1 - int(label))
            answer = "[ANSWER]: " + " ".join(map(str, digits))
        return Completion(answer, len(json.dumps(messages)) // 4, len(answer) // 4)


QUICK = dict(backend="openai", model="scripted", n_examples=3, max_tokens=40, backoff_base=0.05)


@pytest.fixture
def validate_db(validate_collected, tmp_path):
    path = tmp_path / "select.duckdb"
    shutil.copy(validate_collected, path)
    return path, first_validated(path)


@pytest.mark.slow  # a collect on the embedded model
def test_chosen_by_the_validate_split_only_and_scored_on_test(validate_db):
    db, latents = validate_db
    judge = {  # A is perfect on the test split and poor on validate; B the other way round
        "explanation alpha": {"validate": "wrong", "test": "right"},
        "explanation beta": {"validate": "right", "test": "wrong"},
    }
    backend = ScriptedSelection(
        split_labels(db, latents[0]), {0: "explanation alpha", 1: "explanation beta"}, [], judge
    )
    with ModelServer(backend) as server:
        config = ExplainConfig(**QUICK, base_url=server.base_url, latents=",".join(map(str, latents)), candidates=2)
        result = asyncio.run(explain(config, db, progress=False))
        assert result.explained == len(latents)
        scored = ScoreConfig(
            backend="openai", model="scripted", base_url=server.base_url, scorers="detection", backoff_base=0.05
        )
        asyncio.run(score(scored, db, progress=False))
    got = query(db, "SELECT latent, explanation, selection FROM explanations ORDER BY latent")
    assert got == [(lat, "explanation beta", "best_of_k") for lat in latents]
    candidates = query(
        db,
        "SELECT latent, round, candidate, explanation, validation_score, kept, chosen FROM explanation_candidates "
        "ORDER BY latent, round, candidate",
    )
    assert [c[1:] for c in candidates[:2]] == [
        (0, 0, "explanation alpha", 0.0, False, False),
        (0, 1, "explanation beta", 1.0, True, True),
    ]
    assert len(candidates) == 2 * len(latents)
    # the reported score is the test split's: the chosen explanation is wrong there, and says so
    reported = query(db, "SELECT DISTINCT score, selection FROM scores WHERE scorer = 'detection'")
    assert reported == [(0.0, "best_of_k")]
    # validation prompts never showed a test excerpt, and were logged as such
    labels = split_labels(db, latents[0])
    test_texts = {t for t, (split, _) in labels.items() if split == "test"}
    validate_calls = query(db, "SELECT messages FROM llm_calls WHERE purpose = 'validate'")
    assert len(validate_calls) == 2 * len(latents)
    for (messages,) in validate_calls:
        shown = {t for _, t in _LINE.findall(json.loads(messages)[-1]["content"])}
        assert shown and not shown & test_texts
    purposes = dict(query(db, "SELECT purpose, count(*) FROM llm_calls GROUP BY purpose"))
    assert purposes["explain"] == 2 * len(latents) and purposes["detection"] == len(latents)


REFINE_JUDGE = {
    "first guess": {"validate": "yes", "test": "yes"},
    "worse revision": {"validate": "wrong", "test": "yes"},
    "better revision": {"validate": "right", "test": "yes"},
}


@pytest.mark.slow  # a collect on the embedded model
def test_a_worse_revision_is_not_kept_and_every_round_is_stored(validate_db):
    db, latents = validate_db
    backend = ScriptedSelection(
        split_labels(db, latents[0]), {None: "first guess"}, ["worse revision", "better revision"], REFINE_JUDGE
    )
    with ModelServer(backend) as server:
        config = ExplainConfig(**QUICK, base_url=server.base_url, latents=str(latents[0]), refine=2)
        asyncio.run(explain(config, db, progress=False))
        served = server.served
        again = asyncio.run(explain(config, db, progress=False))  # finished: nothing sent again
        assert server.served == served and again.skipped_done == 1
    rows = query(
        db,
        "SELECT round, candidate, explanation, validation_score, kept, chosen, call_id IS NOT NULL "
        "FROM explanation_candidates ORDER BY round",
    )
    assert rows == [
        (0, 0, "first guess", 0.5, True, False, True),
        (1, 0, "worse revision", 0.0, False, False, True),
        (2, 0, "better revision", 1.0, True, True, True),
    ]
    assert query(db, "SELECT explanation, selection, n_calls FROM explanations") == [("better revision", "refined", 3)]
    purposes = dict(query(db, "SELECT purpose, count(*) FROM llm_calls GROUP BY purpose"))
    assert purposes == {"explain": 1, "refine": 2, "validate": 3}
    # round 2 was shown round 1's rejected revision, and the first guess's false positives
    second = query(db, "SELECT messages FROM llm_calls WHERE purpose = 'refine' ORDER BY call_id")[1][0]
    asked = json.loads(second)[-1]["content"]
    assert "- worse revision (0.00)" in asked and "false positives):\n1 " in asked


def test_refine_prompt_matches_golden():
    messages = refine_messages(
        [{"role": "system", "content": "You explain features."}, {"role": "user", "content": "Examples."}],
        "[EXPLANATION]: river names",
        "river names",
        "balanced accuracy",
        0.625,
        ["the stock market fell", "a [EXPLANATION]: trick"],
        ["along the Danube banks"],
        [("names of places", 0.5), ("water", None)],
    )
    rendered = json.dumps(messages, indent=1, ensure_ascii=False) + "\n"
    path = GOLDEN / "explain_refine.json"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(rendered, encoding="utf-8")
    assert rendered == path.read_text(encoding="utf-8"), (
        "prompt changed: rerun with UPDATE_GOLDEN=1 and review the diff"
    )


@pytest.mark.slow  # a collect on the embedded model
def test_killed_mid_refinement_resumes_without_repeating_rounds(validate_db):
    db, latents = validate_db
    revisions = [f"revision number {w}" for w in ("one", "two", "three", "four")]
    judge = {"first guess": {"validate": "yes", "test": "yes"}}
    judge.update({r: {"validate": "wrong", "test": "yes"} for r in revisions})  # none is kept: all four rounds run
    backend = ScriptedSelection(split_labels(db, latents[0]), {None: "first guess"}, revisions, judge)
    with ModelServer(backend, delay=0.25) as server:
        args = [sys.executable, "-m", "autointerp.cli", "explain", "--db", str(db), "--backend", "openai"]
        args += ["--model", "scripted", "--base-url", server.base_url, "--latents", str(latents[0])]
        args += ["--refine", "4", "--n-examples", "3", "--max-tokens", "40", "--max-in-flight", "1", "--quiet"]
        child = subprocess.Popen(
            args, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:  # explain, validate, then (refine, validate) per round: 5 served is inside round 2
            deadline = time.monotonic() + 120
            while server.served < 5 and time.monotonic() < deadline and child.poll() is None:
                time.sleep(0.02)
            assert child.poll() is None, child.stderr.read().decode()[-2000:]
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        rounds_before = query(db, "SELECT count(*) FROM explanation_candidates")[0][0]
        assert rounds_before >= 2  # the first guess and round 1 were stored before the kill
        config = ExplainConfig(**QUICK, base_url=server.base_url, latents=str(latents[0]), refine=4)
        asyncio.run(explain(config, db, progress=False))
    rows = query(db, "SELECT round, explanation, kept, chosen FROM explanation_candidates ORDER BY round")
    assert [r[1] for r in rows] == ["first guess", *revisions] and [r[3] for r in rows] == [True] + [False] * 4
    # every distinct request was answered once; at most the one in flight at the kill was sent again
    repeats = len(backend.prompts) - len(set(backend.prompts))
    assert repeats <= 1, repeats
    answered = query(
        db, "SELECT request_hash, count(*) FROM llm_calls WHERE error IS NULL GROUP BY 1 HAVING count(*) > 1"
    )
    assert len(answered) <= 1
    statuses = [r[0] for r in query(db, "SELECT status FROM runs WHERE stage = 'explain' ORDER BY started_at")]
    assert statuses == ["interrupted", "complete"]


@pytest.mark.parametrize(
    "flags, says", [(["--candidates", "0"], "--candidates is 0"), (["--refine", "-1"], "--refine is -1")]
)
def test_bad_counts_exit_2(tmp_path, capsys, flags, says):
    db = tmp_path / "none.duckdb"
    assert main(["explain", "--db", str(db), "--backend", "openai", "--model", "m", "--quiet", *flags]) == 2
    assert says in capsys.readouterr().err and not db.exists()


@pytest.mark.slow  # a collect on the embedded model
@pytest.mark.parametrize(
    "flags, says",
    [(["--candidates", "3"], "holds no validate contexts"), (["--refine", "1", "--min-validation", "50"], "too small")],
)
def test_a_missing_or_small_validate_split_exits_2_and_loses_nothing(
    collected_db, validate_collected, tmp_path, capsys, flags, says
):
    db = tmp_path / "bad.duckdb"
    shutil.copy(validate_collected if "--min-validation" in flags else collected_db, db)
    before = query(db, "SELECT count(*) FROM examples")
    code = main(["explain", "--db", str(db), "--backend", "openai", "--model", "m", "--quiet", *flags])
    assert code == 2
    assert says in capsys.readouterr().err
    assert query(db, "SELECT count(*) FROM examples") == before
    assert query(db, "SELECT count(*) FROM explanation_rows")[0][0] == 0


def test_candidates_table_has_exactly_the_documented_columns(tmp_path):
    from .test_collect_e2e import documented_columns

    connect(tmp_path / "fresh.duckdb").close()
    columns = [r[0] for r in query(tmp_path / "fresh.duckdb", "DESCRIBE explanation_candidates")]
    assert columns == documented_columns("explanation_candidates")


def test_ties_keep_the_first_and_unscored_never_beats_scored():
    from autointerp.explain.select import Candidate, better
    from autointerp.explain.validation import Validation

    def cand(score, text="x"):
        c = Candidate(0, 0, "item", "explained" if text else "unparsed", text)
        c.validation = Validation(score, 4, None if score is not None else "no answer", [], [])
        return c

    first = cand(0.75)
    assert not better(cand(0.75), first) and better(cand(0.8), first)
    assert not better(cand(None), first) and better(first, cand(None))
    assert better(cand(None), None) and not better(cand(None, text=None), None)


@pytest.mark.slow  # a collect on the embedded model
def test_select_by_embedding_calls_no_llm_to_validate(validate_db):
    db, latents = validate_db
    texts = {0: "explanation alpha", 1: "explanation beta", 2: "explanation gamma"}
    backend = ScriptedSelection({}, texts, [], {})
    with ModelServer(backend) as server:
        config = ExplainConfig(
            **QUICK, base_url=server.base_url, latents=str(latents[0]), candidates=3, select_by="embedding"
        )
        asyncio.run(explain(config, db, progress=False))
    assert dict(query(db, "SELECT purpose, count(*) FROM llm_calls GROUP BY purpose")) == {"explain": 3}
    rows = query(
        db, "SELECT validation_score, validation_n, kept, chosen FROM explanation_candidates ORDER BY candidate"
    )
    n = query(db, "SELECT count(*) FROM examples WHERE split = 'validate' AND latent = ?", [latents[0]])[0][0]
    assert all(0 <= r[0] <= 1 and r[1] == n for r in rows)
    best = max(range(3), key=lambda i: (rows[i][0], -i))  # the first of the highest
    assert [r[3] for r in rows] == [i == best for i in range(3)] and [r[2] for r in rows] == [r[3] for r in rows]
