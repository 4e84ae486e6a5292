"""The schedule store of the ``output_choice`` scorer: each latent steered to every signed KL of a schedule
(Gur-Arieh et al.'s +0.25, +0.5, -0.25, -0.5 nats), each continuing the same few prompts
(``prompts/output_choice_prompts.txt``), computed once and stored in ``intervention_rows`` under a hash
of the schedule's configuration, so a later run (another judge, the shuffled control, this latent
offered as a decoy) reuses the continuations without touching the model.

Where we differ from the spec (shared/specs/intervention-and-output-scores.md, section C):
- Gur-Arieh et al. clamp the latent's activation to a value v at every position in the SAE-spliced model;
  we add ``scale * decoder direction`` at every position of the module the latent writes to (the same
  steering as the intervention scorers, ``models.steering``), which needs no SAE round trip and works
  for transcoders and MLP neurons alike. A negative KL of the schedule steers against the direction,
  as their negative clamp does.
- They calibrate v by integer bisection in [1, 1000] until target <= KL <= target + 0.1, with KL averaged
  over every position of the (right-padded) prompts; we reuse ``kl.scale_for_target_kl``: a continuous
  search in log-scale to |target| ± ``kl_tolerance`` x |target|, KL of the next token at the end of the
  left-padded prompts (the same measure as the intervention scorers).
- Continuations are generated left-padded in one batch (their right padding makes the model continue
  "I think" and "We" after pad tokens, a pitfall the spec names); the rows of one prompt share their
  random numbers across the schedule, so the steering is the only difference between them.

The subject model and its lock are the steering store's (``store.SteeringStore``): one model per run,
one torch job at a time.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import torch

from ...config import config_hash
from ...models import steering as steer
from ..classifier import latent_rng
from . import generation, inputs, kl
from .store import PLANTED_REASON, SteeringStore, rows_writer

OUTPUT_PROMPTS = "output_choice_prompts.txt"
#: The scorer whose unscored rows remember a latent the schedule cannot reach.
SCORER = "output_choice"


@dataclass
class ScheduledSteering:
    """One latent's steered continuations at each KL of the schedule, or why it has none. ``lines`` are
    (signed target KL, prompt, completion), the schedule's order outside, the prompts' inside."""

    latent: int
    calibration: dict  # JSON for score_rows.detail: reached, per-target scales and KLs, the config hash
    lines: list[tuple[float, str, str]] = field(default_factory=list)

    @property
    def reached(self) -> bool:
        return bool(self.calibration.get("reached"))

    def unreached_reason(self) -> str:
        c = self.calibration
        if c.get("planted"):
            return c["reason"]
        return f"steering cannot reach target KL {c['target_kl']:+g} ± {c['tolerance']:g} nats: {c.get('reason', '')}"


class ScheduleStore:
    """The KL-schedule steering of one score run: ``steered(latent)`` gives a latent's
    ``ScheduledSteering``, stored or computed once (concurrent callers share the work)."""

    def __init__(self, context, steering: SteeringStore):
        config = context.config
        self.con, self.config, self.writer, self.run_id = context.con, config, context.writer, context.run_id
        self.steering = steering  # the model, its lock, the collect and its planted latents
        self.prompts = inputs.neutral_prompts(name=OUTPUT_PROMPTS)
        self.schedule = config.output_schedule_values()
        source = steering.source
        self.hash = config_hash(
            {
                "collect": source.identity,
                "dtype": source.dtype,
                "prompts": self.prompts,
                "steering": "decoder direction added at every position",
                "schedule": self.schedule,
                "tokens": config.output_tokens,
                "temperature": config.output_temperature,
                "kl_tolerance": config.kl_tolerance,
                "seed": config.seed,
            }
        )
        self._steerings: dict[int, asyncio.Future] = {}
        self.computed: list[int] = []  # latents steered over the schedule in this run, in order
        self.seconds = 0.0

    def report(self) -> dict:
        """Latents steered over the schedule in this run, and the seconds of torch work."""
        return {"steered": len(self.computed), "seconds": self.seconds}

    def live_latents(self) -> list[int]:
        """Latents of the collect's dictionary that fired at least once, planted ones left out."""
        rows = self.con.execute(
            "SELECT latent FROM latent_stats WHERE run_id = ? AND n_firing > 0 ORDER BY latent",
            [self.steering.source.run_id],
        ).fetchall()
        return [r[0] for r in rows if r[0] not in self.steering.planted]

    def steered(self, latent: int) -> asyncio.Future:
        """The latent's ``ScheduledSteering``: stored, or computed once (concurrent callers share it)."""
        task = self._steerings.get(latent)
        if task is None:
            task = self._steerings[latent] = asyncio.ensure_future(self._steered(latent))
        return task

    async def _steered(self, latent: int) -> ScheduledSteering:
        if latent in self.steering.planted:  # no decoder direction: refused, never loaded or stored
            return ScheduledSteering(latent, self._calibration(False, planted=True, reason=PLANTED_REASON))
        stored = self._stored(latent)
        if stored is not None:
            return stored
        async with self.steering.lock:
            start = time.perf_counter()
            result = await asyncio.to_thread(self._compute, latent)
            self.seconds += time.perf_counter() - start
        self.computed.append(latent)
        if result.reached:
            self.writer.put_result(self._rows_writer(result))
        return result

    def _stored(self, latent: int) -> ScheduledSteering | None:
        """The continuations of an earlier run with this configuration, or its stored failure to reach
        the schedule; None when the latent was never steered so."""
        rows = self.con.execute(
            "SELECT completion_id, prompt, completion, scale, target_kl, achieved_kl FROM intervention_rows "
            "WHERE latent = ? AND config_hash = ? ORDER BY completion_id",
            [latent, self.hash],
        ).fetchall()
        n = len(self.prompts)
        if [r[0] for r in rows] == list(range(n * len(self.schedule))):
            per_target = [
                {"target_kl": r[4], "scale": r[3], "achieved_kl": r[5]} for r in rows[::n]
            ]  # one row per target: the first prompt's
            return ScheduledSteering(
                latent, self._calibration(True, schedule=per_target), lines=[(r[4], r[1], r[2]) for r in rows]
            )
        failed = self.con.execute(
            "SELECT detail FROM score_rows WHERE latent = ? AND scorer = ? AND status = 'unscored' "
            "AND json_extract_string(detail, '$.calibration.intervention_config') = ? "
            "AND json_extract_string(detail, '$.calibration.reached') = 'false' LIMIT 1",
            [latent, SCORER, self.hash],
        ).fetchone()
        if failed is not None:
            return ScheduledSteering(latent, json.loads(failed[0])["calibration"])
        return None

    def _calibration(self, reached: bool, **extra) -> dict:
        return {
            "reached": reached,
            "relative_tolerance": self.config.kl_tolerance,
            "intervention_config": self.hash,
            **extra,
        }

    def _compute(self, latent: int) -> ScheduledSteering:
        """Calibrate every target of the schedule, then generate all its lines in one batch (in a
        worker thread, under the model's lock)."""
        subject, dictionary = self.steering.model()
        hookpoint, direction = steer.steering_target(dictionary, latent, subject)
        reached: list[dict] = []
        last_scale: dict[int, float] = {}  # per sign: a smaller target's scale starts the next search
        for target in self.schedule:
            sign = 1 if target > 0 else -1
            tolerance = self.config.kl_tolerance * abs(target)
            found = kl.scale_for_target_kl(
                subject,
                subject.tokenizer,
                hookpoint,
                direction,
                self.prompts,
                abs(target),
                tolerance,
                sign=sign,
                initial_scale=last_scale.get(sign),
                strict=False,
            )
            if not found.reached:
                return ScheduledSteering(
                    latent,
                    self._calibration(
                        False,
                        target_kl=target,
                        tolerance=tolerance,
                        reason=found.reason,
                        closest=list(found.closest),
                        hookpoint=hookpoint,
                        schedule=reached,
                    ),
                )
            last_scale[sign] = abs(found.scale)
            reached.append(
                {
                    "target_kl": target,
                    "scale": found.scale,
                    "achieved_kl": found.kl,
                    "forward_passes": found.forward_passes,
                }
            )
        n = len(self.prompts)
        scales = torch.tensor([step["scale"] for step in reached for _ in range(n)])
        seed = latent_rng(self.config.seed, latent, "output_choice steering").randrange(2**31)
        texts = generation.generate_completions(
            subject,
            subject.tokenizer,
            self.prompts * len(self.schedule),
            direction,
            scales,
            hookpoint,
            max_new_tokens=self.config.output_tokens,
            seed=seed,
            temperature=self.config.output_temperature,
            noise_rows=n,
        )
        lines = [
            (target, prompt, texts[k * n + i])
            for k, target in enumerate(self.schedule)
            for i, prompt in enumerate(self.prompts)
        ]
        return ScheduledSteering(latent, self._calibration(True, schedule=reached, hookpoint=hookpoint), lines=lines)

    def _rows_writer(self, s: ScheduledSteering):
        n = len(self.prompts)
        rows = [
            [
                s.latent,
                self.hash,
                j,
                j % n,
                prompt,
                True,
                completion,
                s.calibration["schedule"][j // n]["scale"],
                target,
                s.calibration["schedule"][j // n]["achieved_kl"],
                self.run_id,
            ]
            for j, (target, prompt, completion) in enumerate(s.lines)
        ]
        return rows_writer(s.latent, self.hash, rows)
