"""The steering store: each latent's calibrated scale and its clean and steered continuations of the
neutral prompts, computed once and stored in ``intervention_rows`` under a hash of the steering
configuration.

Per latent, the scale of the decoder direction, added at the module it writes to at every position, is
calibrated so that the mean KL(clean || steered) of the next token at the end of the neutral prompts is
``target_kl`` ± ``kl_tolerance`` x ``target_kl`` (delphi's κ and rtol); then each prompt is continued
once clean and once steered, sharing random numbers (seeded per latent). A target the latent cannot
reach is remembered through the unscored ``intervention`` score that records it. Any later run with
the same steering reuses the continuations without touching the model: another judge, another
explanation, the shuffled control, or this latent offered as a choice to another latent.

The subject model is loaded on first use (a rerun whose completions are all stored never loads it).
Torch work runs in a thread, one job at a time (one model), while judge calls go through the LLM queue
concurrently with it.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...collect.reopen import read_collect_source
from ...config import config_hash
from ...errors import AutointerpError
from ...models import steering as steer
from ..classifier import latent_rng
from . import generation, inputs, kl, surprisal

#: Fields of ScoreConfig that shape the steered and clean continuations (with the collect's identity).
STEERING_FIELDS = (
    "target_kl",
    "kl_tolerance",
    "intervention_prompts",
    "completion_tokens",
    "intervention_temperature",
    "seed",
)
PLANTED_REASON = (
    "planted latent: a rule over token ids (planted_latents), it has no decoder direction to steer; "
    "the intervention scorers do not apply to it"
)
ROW_COLUMNS = [
    "latent",
    "config_hash",
    "completion_id",
    "prompt_index",
    "prompt",
    "steered",
    "completion",
    "scale",
    "target_kl",
    "achieved_kl",
    "run_id",
]


def rows_writer(latent: int, config_hash: str, rows: list[list]):
    """The single writer's job that replaces one latent's stored continuations under one steering
    configuration (``intervention_rows``, keyed by latent and config hash) with ``rows``."""

    def write(replacements, call_id_of):  # noqa: ARG001 - the writer's signature
        replacements.replace(
            "intervention_rows", ["latent", "config_hash"], ROW_COLUMNS, [latent, config_hash], rows, now="created_at"
        )

    return write


@dataclass
class Steering:
    """One latent's clean and steered continuations of the neutral prompts, or why it has none."""

    latent: int
    calibration: dict  # JSON for score_rows.detail: scale, target_kl, achieved_kl, reached, ...
    clean: list[str] = field(default_factory=list)
    steered: list[str] = field(default_factory=list)

    @property
    def reached(self) -> bool:
        return bool(self.calibration.get("reached"))

    def unreached_reason(self) -> str:
        c = self.calibration
        if c.get("planted"):
            return c["reason"]
        return f"steering cannot reach target KL {c['target_kl']:g} ± {c['tolerance']:g} nats: {c.get('reason', '')}"


def planted_latents(con, run_id: str) -> set[int]:
    """The planted latents of the collect ``run_id`` (none in a database from before planted latents)."""
    known = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'planted_latents'"
    ).fetchone()
    if not known[0]:
        return set()
    return {r[0] for r in con.execute("SELECT latent FROM planted_latents WHERE run_id = ?", [run_id]).fetchall()}


class SteeringStore:
    """The steering of one score run (``context``: its ``ScoreContext``): ``steering(latent)`` gives a
    latent's ``Steering``, stored or computed once (concurrent callers share the work), and
    ``surprisal(explanation, steering)`` runs the surprisal score on the same model, under the same lock."""

    def __init__(self, context):
        config = context.config
        self.con, self.config, self.writer, self.run_id = context.con, config, context.writer, context.run_id
        self.source = read_collect_source(self.con)
        self.planted = planted_latents(self.con, self.source.run_id)
        prompts = inputs.neutral_prompts()
        if config.intervention_prompts > len(prompts):
            raise AutointerpError(
                f"--intervention-prompts {config.intervention_prompts}, but "
                f"prompts/{inputs.NEUTRAL_PROMPTS} holds {len(prompts)} prompts.",
                f"at most {len(prompts)}.",
                "lower --intervention-prompts or add prompts.",
            )
        self.prompts = prompts[: config.intervention_prompts]
        if config.surprisal_model and not Path(config.surprisal_model).is_dir():
            raise AutointerpError(
                f"--surprisal-model {config.surprisal_model} is not a folder.",
                "a local Hugging Face folder of a causal LM, or nothing for the subject model.",
            )
        self.hash = config_hash(
            {
                "collect": self.source.identity,
                "dtype": self.source.dtype,
                "prompts": self.prompts,
                "steering": "decoder direction added at every position",
                "sign": 1,
                **{k: getattr(config, k) for k in STEERING_FIELDS},
            }
        )
        self.surprisal_model = config.surprisal_model or self.source.model_name
        self.lock = asyncio.Lock()  # one model: one torch job at a time (shared with the schedule store)
        self._steerings: dict[int, asyncio.Future] = {}
        self._loaded = None  # (SubjectModel, Dictionary), loaded on first use
        self._scorer_lm = None  # (model, tokenizer) of the surprisal scorer
        self.computed: list[int] = []  # latents steered (calibrated and generated) in this run, in order
        self.seconds = {"steering": 0.0, "surprisal": 0.0}  # torch time, for benchmarks

    def report(self) -> dict:
        """Latents steered (calibrated and generated) in this run, and the seconds of torch work."""
        return {"steered": len(self.computed), "seconds": dict(self.seconds)}

    def steering(self, latent: int) -> asyncio.Future:
        """The latent's ``Steering``: stored, or computed once (concurrent callers share the work)."""
        task = self._steerings.get(latent)
        if task is None:
            task = self._steerings[latent] = asyncio.ensure_future(self._steering(latent))
        return task

    async def _steering(self, latent: int) -> Steering:
        if latent in self.planted:  # no decoder direction: refused, never loaded or stored
            return Steering(latent, self._calibration(False, None, None, planted=True, reason=PLANTED_REASON))
        stored = self._stored(latent)
        if stored is not None:
            return stored
        async with self.lock:
            start = time.perf_counter()
            result = await asyncio.to_thread(self._compute, latent)
            self.seconds["steering"] += time.perf_counter() - start
        self.computed.append(latent)
        if result.reached:
            self.writer.put_result(self._rows_writer(result))
        return result

    def _stored(self, latent: int) -> Steering | None:
        """Completions of an earlier run with this steering configuration, or its stored failure to
        reach the target KL; None when the latent was never steered so."""
        rows = self.con.execute(
            "SELECT completion_id, steered, completion, scale, achieved_kl FROM intervention_rows "
            "WHERE latent = ? AND config_hash = ? ORDER BY completion_id",
            [latent, self.hash],
        ).fetchall()
        n = len(self.prompts)
        if [r[0] for r in rows] == list(range(2 * n)):
            steered = [r for r in rows if r[1]]
            return Steering(
                latent,
                self._calibration(True, steered[0][3], steered[0][4]),
                clean=[r[2] for r in rows if not r[1]],
                steered=[r[2] for r in steered],
            )
        failed = self.con.execute(
            "SELECT detail FROM score_rows WHERE latent = ? AND scorer = 'intervention' AND status = 'unscored' "
            "AND json_extract_string(detail, '$.calibration.intervention_config') = ? "
            "AND json_extract_string(detail, '$.calibration.reached') = 'false' LIMIT 1",
            [latent, self.hash],
        ).fetchone()
        if failed is not None:
            return Steering(latent, json.loads(failed[0])["calibration"])
        return None

    def _calibration(self, reached: bool, scale: float, achieved: float, **extra) -> dict:
        return {
            "reached": reached,
            "scale": scale,
            "target_kl": self.config.target_kl,
            "tolerance": self.config.kl_tolerance * self.config.target_kl,
            "achieved_kl": achieved,
            "intervention_config": self.hash,
            **extra,
        }

    def model(self):
        """(SubjectModel, Dictionary) of the collect, loaded on first use."""
        if self._loaded is None:
            self._loaded = self.source.load()
        return self._loaded

    def _compute(self, latent: int) -> Steering:
        """Calibrate and generate (in a worker thread, under the lock)."""
        subject, dictionary = self.model()
        hookpoint, direction = steer.steering_target(dictionary, latent, subject)
        found = kl.scale_for_target_kl(
            subject,
            subject.tokenizer,
            hookpoint,
            direction,
            self.prompts,
            self.config.target_kl,
            self.config.kl_tolerance * self.config.target_kl,
            strict=False,
        )
        if not found.reached:
            return Steering(
                latent,
                self._calibration(
                    False, None, None, reason=found.reason, closest=list(found.closest), hookpoint=hookpoint
                ),
            )
        seed = latent_rng(self.config.seed, latent, "steering").randrange(2**31)
        common = dict(
            max_new_tokens=self.config.completion_tokens, seed=seed, temperature=self.config.intervention_temperature
        )
        clean, steered = generation.generate_clean_and_steered(
            subject, subject.tokenizer, self.prompts, direction, found.scale, hookpoint, **common
        )
        return Steering(
            latent,
            self._calibration(True, found.scale, found.kl, hookpoint=hookpoint, forward_passes=found.forward_passes),
            clean=clean,
            steered=steered,
        )

    def _rows_writer(self, s: Steering):
        rows = []
        for i, prompt in enumerate(self.prompts):
            for steered in (False, True):
                rows.append(
                    [
                        s.latent,
                        self.hash,
                        2 * i + steered,
                        i,
                        prompt,
                        steered,
                        (s.steered if steered else s.clean)[i],
                        s.calibration["scale"] if steered else 0.0,
                        self.config.target_kl,
                        s.calibration["achieved_kl"] if steered else 0.0,
                        self.run_id,
                    ]
                )
        return rows_writer(s.latent, self.hash, rows)

    async def surprisal(self, explanation: str, own: Steering) -> dict:
        """``surprisal.surprisal_score`` of ``explanation`` over ``own``'s continuations (with their
        prompts), on the scorer LM, in a thread under the lock."""
        async with self.lock:
            start = time.perf_counter()
            result = await asyncio.to_thread(self._surprisal_now, explanation, own)
            self.seconds["surprisal"] += time.perf_counter() - start
        return result

    def _surprisal_now(self, explanation: str, own: Steering) -> dict:
        model, tokenizer = self._surprisal_lm()
        return surprisal.surprisal_score(model, tokenizer, explanation, own.clean, own.steered, prompts=self.prompts)

    def _surprisal_lm(self):
        if self._scorer_lm is None:
            subject, _ = self.model()
            if not self.config.surprisal_model:
                self._scorer_lm = (subject, subject.tokenizer)
            else:
                from transformers import AutoModelForCausalLM, AutoTokenizer

                path = self.config.surprisal_model
                model = AutoModelForCausalLM.from_pretrained(path, dtype=subject.dtype).to(subject.device).eval()
                self._scorer_lm = (model, AutoTokenizer.from_pretrained(path))
        return self._scorer_lm
