"""The intervention scorer of ``autointerp score``: steer each latent, then score its explanation three ways.

Per latent:

1. **Calibrate** the scale of the latent's decoder direction, added at the module it writes to at every
   position, so that the mean KL(clean || steered) of the next token at the end of the neutral prompts
   is ``target_kl`` ± ``kl_tolerance`` x ``target_kl`` (delphi's κ and rtol). A target the latent cannot
   reach stores the three scores as unscored with the reason, never as a score. Steering goes the
   direction's own way, also for signed latents (MLP neurons, AbsTopK), whose other side is not scored.
2. **Continue** each neutral prompt once clean and once steered, sharing random numbers (seeded per
   latent), and store both in ``intervention_rows`` under a hash of the steering configuration. Any later
   run with the same steering reuses them without touching the model: another judge, another explanation,
   the shuffled control, or this latent offered as a choice to another latent.
3. **Score**:
   - ``intervention``: an LLM judge, given the explanation, labels each text (prompt + continuation, about
     half steered) as steered or not; label = steered, prediction = the judge's answer; headline
     ``balanced_accuracy`` (chance 0.5).
   - ``intervention_choice``: the judge picks, among the steered continuations of this latent and of
     ``choices - 1`` other explained latents (drawn with the seed; those steered on the way are stored
     and later reused as their own), the set the explanation describes; headline ``accuracy`` of one
     question per latent (chance 1 / number of sets).
   - ``intervention_surprisal``: delphi's surprisal score, the mean over prompts of log p(explanation |
     steered text) - log p(explanation | clean text) under a scorer LM, in nats (chance 0). Each pair is
     also read as a two-way choice (the text after which the explanation is likelier is "steered",
     probability the logistic of the log-probability difference), giving ``accuracy``, balanced
     accuracy and AUROC with chance 0.5.

Where we differ from the spec (shared/specs/intervention-and-output-scores.md):
- delphi (B) continues 30 corpus prompts cut right after the latent's first activation and edits the
  latent at the last prompt token; we continue neutral prompts shared by every latent and add the
  decoder direction at every position (``intervention.steering``), so the clean text carries nothing of
  the latent's input side, the steered text carries the effect throughout, and the multiple-choice sets
  are continuations of the same prompts;
- delphi scores with a separate Llama-3.1-8B base model and a 4-shot frame; we use the subject model
  itself (as PR #151) unless ``surprisal_model`` names a local folder, with the 0-shot frame
  ``prompts/intervention_surprisal.txt``; and we score the pipeline's explanation, not five explanations
  from an intervention-based explainer;
- Gur-Arieh et al. (C) clamp the latent in the SAE-spliced model over a KL schedule (±0.25, ±0.5) and
  ask a 3-way question against two decoy sets from random features; we use one calibrated target KL,
  the same additive steering, a per-text judge question (a), and ``choices`` sets whose decoys are other
  explained latents of the same dictionary at the same target KL (b).

The subject model is loaded on first use (a rerun whose completions are all stored never loads it for
steering). Torch work runs in a thread, one job at a time (one model), while judge calls go through the
LLM queue (throttling, retries, the call log) concurrently with it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ScoreConfig, config_hash
from ..errors import AutointerpError
from ..llm.queue import RequestFailed
from ..text import prompt_text
from . import intervention as iv
from . import intervention_judge as judge
from .answers import digit_probabilities, parse_digits
from .classifier import latent_rng
from .metrics import binary_metrics, multiple_choice
from .reopen import read_collect_source
from .rows import replace_score

SCORERS = ("intervention", "intervention_choice", "intervention_surprisal")
#: Fields of ScoreConfig that shape the steered and clean continuations (with the collect's identity).
STEERING_FIELDS = (
    "target_kl",
    "kl_tolerance",
    "intervention_prompts",
    "completion_tokens",
    "intervention_temperature",
    "seed",
)
#: Fields that shape a judge's answers.
JUDGE_FIELDS = ("backend", "model", "max_tokens", "temperature", "guided", "logprobs", "batch_size", "seed")
PURPOSE = "intervention"


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


@dataclass
class _Score:
    """One score row and its per-completion rows, ready to write."""

    scorer: str
    status: str
    reason: str | None
    chance: dict
    detail: dict
    score: float | None = None
    metrics: dict = field(default_factory=dict)
    n_examples: int = 0
    n_unscored: int = 0
    n_calls: int = 0
    tokens: list[int] = field(default_factory=lambda: [0, 0, 0])  # prompt, completion, fixed prompt
    examples: list[dict] = field(default_factory=list)


class InterventionScorer:
    """Scores ``chosen`` ({latent: (explanation_id, explanation)}) with the three intervention scorers;
    see the module docstring. ``identities`` maps each scorer name to its configuration hash, so the
    stage can skip (latent, explanation, scorer, hash) already in ``score_rows``; ``score_latent`` scores
    one latent and hands every row to ``writer`` (one transaction per latent)."""

    def __init__(
        self,
        con,
        config: ScoreConfig,
        queue,
        writer,
        run_id: str,
        options,
        judge_model: str,
        chosen: dict[int, tuple[str, str]],
    ):
        self.con, self.config, self.queue, self.writer = con, config, queue, writer
        self.run_id, self.options, self.chosen = run_id, options, chosen
        self.source = read_collect_source(con)
        prompts = iv.neutral_prompts()
        if config.intervention_prompts > len(prompts):
            raise AutointerpError(
                f"--intervention-prompts {config.intervention_prompts}, but "
                f"prompts/{iv.NEUTRAL_PROMPTS} holds {len(prompts)} prompts.",
                f"at most {len(prompts)}.",
                "lower --intervention-prompts or add prompts.",
            )
        self.prompts = prompts[: config.intervention_prompts]
        if config.surprisal_model and not Path(config.surprisal_model).is_dir():
            raise AutointerpError(
                f"--surprisal-model {config.surprisal_model} is not a folder.",
                "a local Hugging Face folder of a causal LM, or nothing for the subject model.",
            )
        self.steering_hash = config_hash(
            {
                "collect": self.source.identity,
                "dtype": self.source.dtype,
                "prompts": self.prompts,
                "steering": "decoder direction added at every position",
                "sign": 1,
                **{k: getattr(config, k) for k in STEERING_FIELDS},
            }
        )
        judging = {k: getattr(config, k) for k in JUDGE_FIELDS}
        surprisal_name = config.surprisal_model or self.source.model_name
        self.models = {
            "intervention": judge_model,
            "intervention_choice": judge_model,
            "intervention_surprisal": surprisal_name,
        }
        prompt_files = {name: prompt_text(name) for name in judge.PROMPT_FILES}
        self.identities = {
            "intervention": config_hash(
                {
                    "scorer": "intervention",
                    "steering": self.steering_hash,
                    "judge_model": judge_model,
                    **judging,
                    "prompts": [prompt_files[judge.JUDGE_SYSTEM], prompt_files[judge.JUDGE_USER]],
                }
            ),
            "intervention_choice": config_hash(
                {
                    "scorer": "intervention_choice",
                    "steering": self.steering_hash,
                    "judge_model": judge_model,
                    **judging,
                    "choices": config.choices,
                    "prompts": [prompt_files[judge.CHOICE_SYSTEM], prompt_files[judge.CHOICE_USER]],
                }
            ),
            "intervention_surprisal": config_hash(
                {
                    "scorer": "intervention_surprisal",
                    "steering": self.steering_hash,
                    "scorer_model": surprisal_name,
                    "template": prompt_text(iv.SURPRISAL_TEMPLATE),
                }
            ),
        }
        self._done = {
            (lat, eid, s)
            for lat, eid, s, h in con.execute(
                "SELECT latent, explanation_id, scorer, config_hash FROM score_rows WHERE control = ? "
                "AND scorer IN (SELECT unnest(?))",
                [config.control, list(SCORERS)],
            ).fetchall()
            if self.identities[s] == h
        }
        self._lock = asyncio.Lock()  # one model: one torch job at a time
        self._steerings: dict[int, asyncio.Future] = {}
        self._loaded = None  # (SubjectModel, Dictionary), loaded on first use
        self._scorer_lm = None  # (model, tokenizer) of the surprisal scorer
        count = getattr(getattr(queue, "backend", None), "count_tokens", None)
        self._fixed = {
            name: count([{"role": "system", "content": prompt_files[name].strip()}]) if count else 0
            for name in (judge.JUDGE_SYSTEM, judge.CHOICE_SYSTEM)
        }
        self.computed: list[int] = []  # latents steered (calibrated and generated) by this scorer, in order
        self.seconds = {"steering": 0.0, "surprisal": 0.0}  # torch time, for the run summary and benchmarks

    # ------------------------------------------------------------------------------------------ steering

    def steering(self, latent: int) -> asyncio.Future:
        """The latent's ``Steering``: stored, or computed once (concurrent callers share the work)."""
        task = self._steerings.get(latent)
        if task is None:
            task = self._steerings[latent] = asyncio.ensure_future(self._steering(latent))
        return task

    async def _steering(self, latent: int) -> Steering:
        stored = self._stored(latent)
        if stored is not None:
            return stored
        async with self._lock:
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
            [latent, self.steering_hash],
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
            [latent, self.steering_hash],
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
            "intervention_config": self.steering_hash,
            **extra,
        }

    def _model(self):
        if self._loaded is None:
            self._loaded = self.source.load()
        return self._loaded

    def _compute(self, latent: int) -> Steering:
        """Calibrate and generate (in a worker thread, under the lock)."""
        subject, dictionary = self._model()
        hookpoint, direction = iv.steering_target(dictionary, latent, subject)
        found = iv.scale_for_target_kl(
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
        clean, steered = iv.generate_clean_and_steered(
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
            rows.append(
                [
                    s.latent,
                    self.steering_hash,
                    2 * i,
                    i,
                    prompt,
                    False,
                    s.clean[i],
                    0.0,
                    self.config.target_kl,
                    0.0,
                    self.run_id,
                ]
            )
            rows.append(
                [
                    s.latent,
                    self.steering_hash,
                    2 * i + 1,
                    i,
                    prompt,
                    True,
                    s.steered[i],
                    s.calibration["scale"],
                    self.config.target_kl,
                    s.calibration["achieved_kl"],
                    self.run_id,
                ]
            )

        def write(replacements, call_id_of):  # noqa: ARG001 - the writer's signature
            replacements.replace(
                "intervention_rows",
                ["latent", "config_hash"],
                [
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
                ],
                [s.latent, self.steering_hash],
                rows,
                now="created_at",
            )

        return write

    # ------------------------------------------------------------------------------------------- scoring

    async def score_latent(self, latent: int) -> dict[str, str]:
        """Score ``latent`` with each intervention scorer it lacks a row for; returns scorer -> 'scored' or
        'unscored' for the scorers it wrote (finished ones are left out)."""
        explanation_id, explanation = self.chosen[latent]
        todo = [s for s in SCORERS if (latent, explanation_id, s) not in self._done]
        if not todo:
            return {}
        own = await self.steering(latent)
        if not own.reached:
            reason = (
                f"steering cannot reach target KL {self.config.target_kl:g} ± "
                f"{own.calibration['tolerance']:g} nats: {own.calibration.get('reason', '')}"
            )
            scores = [_Score(s, "unscored", reason, _CHANCE[s](self), {"calibration": own.calibration}) for s in todo]
        else:
            work = {
                "intervention": lambda: self._judge(latent, explanation, own),
                "intervention_choice": lambda: self._choice(latent, explanation, own),
                "intervention_surprisal": lambda: self._surprisal(explanation, own),
            }
            scores = list(await asyncio.gather(*[work[s]() for s in todo]))
        self.writer.put_result(self._scores_writer(latent, explanation_id, scores))
        self._done.update((latent, explanation_id, s.scorer) for s in scores)
        return {s.scorer: s.status for s in scores}

    async def _ask(self, messages, regex: str, item: str):
        """(answer text with the prefill, completion, None) or (None, None, why the request failed)."""
        options = dataclasses.replace(self.options, regex=regex) if self.options.prefill else self.options
        try:
            completion = await self.queue.run(messages, options, item, PURPOSE)
        except RequestFailed as exc:
            return None, None, f"request failed: {exc.reason}"
        return options.prefill + completion.text, completion, None

    async def _judge(self, latent: int, explanation: str, own: Steering) -> _Score:
        texts = []
        for i, prompt in enumerate(self.prompts):
            texts.append((2 * i, False, judge.shown_text(prompt, own.clean[i])))
            texts.append((2 * i + 1, True, judge.shown_text(prompt, own.steered[i])))
        latent_rng(self.config.seed, latent, "intervention").shuffle(texts)
        size = self.config.batch_size
        groups = [texts[k : k + size] for k in range(0, len(texts), size)]

        async def one(b: int, group: list) -> tuple[list[dict], object]:
            item = f"latent {latent} intervention batch {b}"
            n = len(group)
            messages = judge.judge_messages(explanation, [text for _, _, text in group])
            answer, completion, reason = await self._ask(messages, f"( [01]){{{n}}}", item)
            predictions = probabilities = [None] * n
            if answer is not None:
                parsed, reason = parse_digits(answer, n)
                if parsed is not None:
                    predictions = parsed
                    probabilities = (
                        digit_probabilities(answer, completion.logprobs, n, self.options.prefill) or [None] * n
                    )
            rows = [
                {
                    "context_id": cid,
                    "variant": "steered" if label else "clean",
                    "label": label,
                    "prediction": p,
                    "probability": q,
                    "batch": b,
                    "item": item,
                    "reason": None if p is not None else reason,
                }
                for (cid, label, _), p, q in zip(group, predictions, probabilities, strict=True)
            ]
            return rows, completion

        answered = await asyncio.gather(*[one(b, g) for b, g in enumerate(groups)])
        rows = [r for part, _ in answered for r in part]
        completions = [c for _, c in answered if c is not None]
        metrics = binary_metrics(
            [r["label"] for r in rows], [r["prediction"] for r in rows], [r["probability"] for r in rows]
        )
        result = _Score(
            "intervention",
            "scored",
            None,
            {**metrics["chance"], "score": 0.5},
            {"calibration": own.calibration, "texts": len(rows), "batches": len(groups)},
            score=metrics["balanced_accuracy"],
            metrics=metrics,
            n_examples=metrics["n"],
            n_unscored=metrics["n_unscored"],
            n_calls=len(groups),
            examples=rows,
            tokens=[
                sum(c.prompt_tokens for c in completions),
                sum(c.completion_tokens for c in completions),
                len(completions) * self._fixed[judge.JUDGE_SYSTEM],
            ],
        )
        if result.score is None:
            why = next((r["reason"] for r in rows if r["reason"]), "the readable answers cover one class only")
            result.status, result.reason = "unscored", f"no balanced accuracy: {why}"
        return result

    async def _choice(self, latent: int, explanation: str, own: Steering) -> _Score:
        rng = latent_rng(self.config.seed, latent, "intervention_choice")
        others = [lat for lat in sorted(self.chosen) if lat != latent]
        rng.shuffle(others)
        decoys = []
        for other in others:  # in the seeded order, the first that steering can reach
            if len(decoys) == self.config.choices - 1:
                break
            candidate = await self.steering(other)
            if candidate.reached:
                decoys.append(candidate)
        detail = {"calibration": own.calibration}
        if not decoys:
            return _Score(
                "intervention_choice",
                "unscored",
                "no other explained latent can be steered to the target KL to offer as a choice",
                _CHANCE["intervention_choice"](self),
                detail,
            )
        n = len(decoys) + 1
        correct = rng.randrange(n)
        offered = decoys[:correct] + [own] + decoys[correct:]
        item = f"latent {latent} intervention_choice"
        sets = [[judge.shown_text(p, c) for p, c in zip(self.prompts, s.steered, strict=True)] for s in offered]
        answer, completion, reason = await self._ask(
            judge.choice_messages(explanation, sets), judge.choice_regex(n), item
        )
        chosen = None
        if answer is not None:
            chosen, reason = judge.parse_choice(answer, n)
        metrics = multiple_choice([correct], [chosen], n)
        detail.update(choices=[s.latent for s in offered], correct=correct, chosen=chosen)
        hit = None if chosen is None else chosen == correct
        examples = [
            {
                "context_id": 2 * i + 1,
                "variant": "steered",
                "label": True,
                "prediction": hit,
                "probability": None,
                "batch": 0,
                "item": item,
                "reason": reason if hit is None else None,
            }
            for i in range(len(self.prompts))
        ]
        called = completion is not None
        return _Score(
            "intervention_choice",
            "scored" if chosen is not None else "unscored",
            None if chosen is not None else f"no readable choice: {reason}",
            {"score": 1 / n, "accuracy": 1 / n},
            detail,
            score=metrics["accuracy"],
            metrics={"accuracy": metrics["accuracy"]},
            n_examples=metrics["n"],
            n_unscored=metrics["n_unscored"],
            n_calls=1,
            examples=examples,
            tokens=[
                completion.prompt_tokens if called else 0,
                completion.completion_tokens if called else 0,
                self._fixed[judge.CHOICE_SYSTEM] if called else 0,
            ],
        )

    async def _surprisal(self, explanation: str, own: Steering) -> _Score:
        async with self._lock:
            start = time.perf_counter()
            result = await asyncio.to_thread(self._surprisal_now, explanation, own)
            self.seconds["surprisal"] += time.perf_counter() - start
        rows = []
        for i, (clean, steered) in enumerate(zip(result["logp_clean"], result["logp_steered"], strict=True)):
            for cid, label, mine, other in ((2 * i, False, clean, steered), (2 * i + 1, True, steered, clean)):
                probability = 1 / (1 + math.exp(other - mine))  # P(this is the steered text), a 2-way choice
                rows.append(
                    {
                        "context_id": cid,
                        "variant": "steered" if label else "clean",
                        "label": label,
                        "prediction": probability > 0.5,
                        "probability": probability,
                        "batch": 0,
                        "item": None,
                        "reason": None,
                    }
                )
        metrics = binary_metrics(
            [r["label"] for r in rows], [r["prediction"] for r in rows], [r["probability"] for r in rows]
        )
        detail = {
            "calibration": own.calibration,
            "unit": "nats",
            "sem": _finite(result["sem"]),
            "per_prompt": result["per_prompt"],
            "logp_clean": result["logp_clean"],
            "logp_steered": result["logp_steered"],
        }
        return _Score(
            "intervention_surprisal",
            "scored",
            None,
            {**metrics["chance"], "score": 0.0},
            detail,
            score=result["score"],
            metrics=metrics,
            n_examples=result["n_prompts"],
            examples=rows,
        )

    def _surprisal_now(self, explanation: str, own: Steering) -> dict:
        model, tokenizer = self._surprisal_lm()
        return iv.surprisal_score(model, tokenizer, explanation, own.clean, own.steered, prompts=self.prompts)

    def _surprisal_lm(self):
        if self._scorer_lm is None:
            subject, _ = self._model()
            if not self.config.surprisal_model:
                self._scorer_lm = (subject, subject.tokenizer)
            else:
                from transformers import AutoModelForCausalLM, AutoTokenizer

                path = self.config.surprisal_model
                model = AutoModelForCausalLM.from_pretrained(path, dtype=subject.dtype).to(subject.device).eval()
                self._scorer_lm = (model, AutoTokenizer.from_pretrained(path))
        return self._scorer_lm

    # --------------------------------------------------------------------------------------------- writing

    def _scores_writer(self, latent: int, explanation_id: str, scores: list[_Score]):
        control, run_id = self.config.control, self.run_id

        def write(rows, call_id_of):
            for s in scores:
                m, identity = s.metrics, self.identities[s.scorer]
                replace_score(
                    rows,
                    dict(
                        latent=latent,
                        explanation_id=explanation_id,
                        scorer=s.scorer,
                        config_hash=identity,
                        control=control,
                        model=self.models[s.scorer],
                        run_id=run_id,
                        status=s.status,
                        reason=s.reason,
                        n_examples=s.n_examples,
                        n_unscored=s.n_unscored,
                        balanced_accuracy=m.get("balanced_accuracy"),
                        accuracy=m.get("accuracy"),
                        precision=m.get("precision"),
                        recall=m.get("recall"),
                        f1=m.get("f1"),
                        auroc=m.get("auroc"),
                        chance=json.dumps(s.chance),
                        n_calls=s.n_calls,
                        prompt_tokens=s.tokens[0],
                        completion_tokens=s.tokens[1],
                        fixed_prompt_tokens=s.tokens[2],
                        score=s.score,
                        detail=json.dumps(s.detail),
                    ),
                    [
                        dict(
                            run_id=run_id,
                            context_id=r["context_id"],
                            variant=r["variant"],
                            label=r["label"],
                            prediction=r["prediction"],
                            probability=r["probability"],
                            batch=r["batch"],
                            call_id=call_id_of(r["item"]) if r["item"] else None,
                            reason=r["reason"],
                        )
                        for r in s.examples
                    ],
                )

        return write


def _finite(value: float) -> float | None:
    return value if value is not None and math.isfinite(value) else None


# chance levels stored with an unscored row: nothing was judged (no predicted-positive rate, no choices offered)
_CHANCE = {
    "intervention": lambda self: {"score": 0.5, "balanced_accuracy": 0.5},
    "intervention_choice": lambda self: {"score": 1 / self.config.choices, "accuracy": 1 / self.config.choices},
    "intervention_surprisal": lambda self: {"score": 0.0},
}
