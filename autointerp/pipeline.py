"""The three stages as plain synchronous functions, the public face of ``autointerp.collect``,
``autointerp.explain`` and ``autointerp.score``.

Each takes the stage's config and the database path, as the CLI does; the stage modules are imported
when called, so ``import autointerp`` stays light. explain and score are coroutines inside; these
wrappers run them in a fresh event loop. Inside a running loop (a notebook cell that awaits), await
``autointerp.explain.stage.explain`` and ``autointerp.score.stage.score`` instead.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import CollectConfig, ExecutorConfig, ExplainConfig, ScoreConfig
    from .executor import Executor


def _executor(executor: Executor | ExecutorConfig | None) -> Executor | None:
    """An ``ExecutorConfig`` becomes its executor here, as the CLI does; an executor object is used as it is."""
    from .config import ExecutorConfig

    if isinstance(executor, ExecutorConfig):
        from .scale import make_executor

        return make_executor(executor)
    return executor


def collect(
    config: CollectConfig,
    db: str | Path,
    *,
    overwrite: bool = False,
    progress: bool = True,
    executor: Executor | ExecutorConfig | None = None,
):
    """Run the collect stage into the database at ``db`` (created if missing) and return its
    ``CollectResult``; ``overwrite`` replaces an earlier collect made with a different configuration."""
    from .collect.stage import collect as run

    return run(config, db, overwrite=overwrite, progress=progress, executor=_executor(executor))


def explain(
    config: ExplainConfig, db: str | Path, *, progress: bool = True, executor: Executor | ExecutorConfig | None = None
):
    """Explain the latents ``config`` selects in the collected database ``db``; returns the
    ``ExplainResult`` (a rerun skips what is already explained)."""
    from .explain.stage import explain as run

    return asyncio.run(run(config, db, progress=progress, executor=_executor(executor)))


def score(
    config: ScoreConfig, db: str | Path, *, progress: bool = True, executor: Executor | ExecutorConfig | None = None
):
    """Score the explanations ``config`` selects in ``db`` with its scorers; returns the
    ``ScoreResult`` (a rerun skips what is already scored)."""
    from .score.stage import score as run

    return asyncio.run(run(config, db, progress=progress, executor=_executor(executor)))
