"""Every option is validated before any work starts: the CLI flags and the demo's KEY=VALUE forms."""

from __future__ import annotations

import math

import pytest

from autointerp.cli import main
from autointerp.config import CollectConfig, ExecutorConfig, ExplainConfig, ScoreConfig, parse_latent_ranges
from autointerp.demo.settings import build_settings
from autointerp.errors import AutointerpError

BAD = [
    (CollectConfig, {"top_k": 0}),
    (CollectConfig, {"neighbours_k": -1}),
    (CollectConfig, {"neighbours_k": True}),
    (ExplainConfig, {"temperature": math.nan}),
    (ExplainConfig, {"temperature": -1.0}),
    (ExplainConfig, {"timeout": math.nan}),
    (ExplainConfig, {"timeout": math.inf}),
    (ExplainConfig, {"rps": math.nan}),
    (ExplainConfig, {"backoff_base": math.inf}),
    (ExplainConfig, {"mark_threshold": math.nan}),
    (ExplainConfig, {"change_scale": math.nan}),
    (ExplainConfig, {"change_scale": 0.0}),
    (ExplainConfig, {"output_tokens": 0}),
    (ExplainConfig, {"change_window_len": -1}),
    (ScoreConfig, {"temperature": math.inf}),
    (ScoreConfig, {"kl_tolerance": math.nan}),
    (ExecutorConfig, {"worker_gpus": math.nan}),
]


@pytest.mark.parametrize(("cls", "values"), BAD, ids=[f"{c.__name__}-{v}" for c, v in BAD])
def test_config_refuses_bad_values(cls, values):
    with pytest.raises(AutointerpError):
        cls(**values)


def test_demo_overrides_are_validated_before_work():
    for collect, explain, score in [
        (["top_k=0"], [], []),
        ([], ["temperature=nan"], []),
        ([], [], ["temperature=inf"]),
        ([], ["timeout=nan"], []),
    ]:
        with pytest.raises(AutointerpError):
            build_settings(20_000, "detection", "none", collect, explain, score)


def test_cli_refuses_top_k_0_and_nan_temperature_at_once(tmp_path, capsys):
    assert main(["collect", "--db", str(tmp_path / "a.duckdb"), "--top-k", "0", "--quiet"]) == 2
    assert main(["explain", "--db", str(tmp_path / "a.duckdb"), "--temperature", "nan"]) == 2
    err = capsys.readouterr().err
    assert "--top-k" in err and "--temperature" in err and "Traceback" not in err
    assert not (tmp_path / "a.duckdb").exists()  # refused before the database was even created


@pytest.mark.parametrize("spec", ["1,,2", ",", "١٢", "1-٣", "+1", "1_000", "1--2"])
def test_latent_ranges_take_ascii_digits_only(spec):
    with pytest.raises(AutointerpError):
        parse_latent_ranges(spec)


def test_latent_ranges_still_read_the_usual_forms():
    assert parse_latent_ranges("0-999,1500") == [(0, 999), (1500, 1500)]
    assert parse_latent_ranges(" 3 , 5-6 ") == [(3, 3), (5, 6)]
    assert parse_latent_ranges("") == []
