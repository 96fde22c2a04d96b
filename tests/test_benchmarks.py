"""scripts/bench_*.py: bad options are refused by name, and what they print compares like with like."""

from __future__ import annotations

import re

import pytest
from omegaconf import OmegaConf

from supernets.paths import CONFIG_DIR
from tests.script_utils import load_script, script_config

_script = load_script


# ---------------------------------------------------------------------------------- bench_latency
def _latency_cfg(*overrides: str):
    """configs/scripts/bench_latency.yaml with tiny, fast measurement settings and ``overrides``."""
    quick = ["supernet=ofa_mbv3_tiny", "n_subnets=3", "n_repeat_check=0", "n_predict=100", "measure.repeats=2",
             "measure.sessions=1", "measure.warmup=0"]
    return OmegaConf.merge(OmegaConf.load(CONFIG_DIR / "scripts" / "bench_latency.yaml"), OmegaConf.from_dotlist([*quick, *overrides]))


@pytest.mark.parametrize(("device", "supernet"), [("note10", "ofa_mbv3_w12"), ("v100", "ofa_mbv3_w10")])
def test_bench_latency_refuses_a_device_not_measured_on_this_host(device, supernet):
    # OFA's Note10 table / a learned GPU model (through the v100 alias) against this host's ONNX Runtime timings
    # would be scored meaninglessly; the message names the devices that can be benchmarked here (host_cpu where
    # its bundled table was measured on this machine, none on any other: the table is an example from elsewhere)
    bench = _script("bench_latency")
    env = bench.environment_fingerprint()
    here = ", ".join(bench.host_devices(env)) or "none"
    assert here in ("host_cpu", "none")
    with pytest.raises(SystemExit, match=rf"Devices measured on this host: {here}\b"):
        bench.bench(_latency_cfg(f"device={device}", f"supernet={supernet}"))


def test_bench_latency_counts_only_tables_measured_on_this_machine():
    bench = _script("bench_latency")
    env = {"cpu": "AMD EPYC", "machine": "x86_64"}
    here = {"source": "measured", "runtime": "onnxruntime", "fingerprint": {**env, "system": "another kernel"}}
    assert bench.measured_here(here, env)
    assert not bench.measured_here({**here, "fingerprint": {**env, "cpu": "Apple M2"}}, env)
    assert not bench.measured_here({**here, "source": "converted"}, env)


def _bench_latency_anywhere(monkeypatch):
    """bench_latency with its host check off: the bundled host_cpu table is an example measured on another
    machine, and these tests check the options and the report, not the host check (tested above)."""
    bench = _script("bench_latency")
    monkeypatch.setattr(bench, "_require_measured_here", lambda *a: None)
    return bench


@pytest.mark.parametrize(("override", "match"), [
    ("resolutions=[40]", r"resolutions \[40\] are not covered .* allowed: \[24, 28, 32\]"),
    ("n_predict=0", "n_predict must be >= 1"),
    ("n_subnets=2", "n_subnets must be >= 3"),
])
def test_bench_latency_rejects_bad_options_by_name(override, match, monkeypatch):
    with pytest.raises(SystemExit, match=match):
        _bench_latency_anywhere(monkeypatch).bench(_latency_cfg(override))


def test_bench_latency_labels_say_what_was_measured(capsys, monkeypatch):
    report = _bench_latency_anywhere(monkeypatch).bench(_latency_cfg())
    out = capsys.readouterr().out
    assert "all 100 walked" in out and "extrapolated" not in out  # n_predict=100: the walk covers every arch
    assert "target <= 50 ms:" not in out and "the <= 50 ms target is for 10000 archs" in out
    # MAPE and within ±10 % are printed as percentages of the report's fractions
    assert re.search(r"MAPE %\s+within10 %", out)
    row = next(line.split() for line in out.splitlines() if line.startswith("table_sum "))
    r = report["models"]["table_sum"]
    assert float(row[2]) == pytest.approx(100 * r["mape"], abs=0.006)
    assert float(row[3]) == pytest.approx(100 * r["within_10pct"], abs=0.06)


# ---------------------------------------------------------------------------------- bench_predictor
def test_bench_predictor_rejects_negative_threads():
    with pytest.raises(ValueError, match=r"threads must be 0 \(library default\) or a positive count, got -1"):
        _script("bench_predictor").main(script_config("bench_predictor", "threads=-1"))


def test_bench_predictor_speed_up_starts_from_arch_objects_on_both_sides(capsys):
    rows = _script("bench_predictor").main(script_config("bench_predictor", "n=60", "naive=1000", "repeats=1"))
    out = capsys.readouterr().out
    assert "naive per-arch all 60 timed" in out and "timed on 1000" not in out  # it timed the 60 there were
    for r in rows:  # the naive loop encodes Arch objects: compare with the Arch-list path, not the pre-encoded one
        assert r["speed_up"] == pytest.approx(r["naive_ms"] / r["arch_ms"])


# ---------------------------------------------------------------------------------- bench_search
def test_bench_search_scores_only_note10_against_ofa_and_gives_random_the_same_evaluations(capsys):
    bench = _script("bench_search")
    res = bench.main(script_config("bench_search", "device=pixel", "pop_size=10", "n_gen=2", "ofa_gens=0", "budgets=[25]",
                                   "random_batch=8"))
    out = capsys.readouterr().out
    assert "no published reference for device 'pixel'" in out and not re.search(r"PASS|FAIL", out)
    # NSGA-II's evaluations are not a multiple of the random batch: the last random batch is smaller
    n = res["nsga2"]["n_evals"]
    assert n % 8 and res["random"]["n_evals"] == n
    assert f"NSGA-II {res['nsga2']['hypervolume']:.5f} ({n} evaluations) vs random" in out
    bench.main(script_config("bench_search", "pop_size=10", "n_gen=2", "ofa_gens=0", "budgets=[25]", "random_batch=8"))
    assert re.search(r"25 ms: \S+ vs OFA tutorial 0.8171 -> (PASS|FAIL)", capsys.readouterr().out)
