"""scripts/reproduce.py: every reproduce config composes, and each CPU table runs on tiny settings."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from paper_tables import TABLES, markdown, run_table
from paper_tables.runner import TABLE_CONFIG_DIR, reproduce, table_config
from supernets.paths import CONFIG_DIR, REPO_ROOT

TABLE_NAMES = sorted(p.stem for p in TABLE_CONFIG_DIR.glob("*.yaml"))


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIG_DIR / "reproduce"), version_base="1.3"):
        return compose(config_name="reproduce", overrides=overrides)


@pytest.mark.parametrize("name", TABLE_NAMES)
def test_every_reproduce_config_composes_and_names_a_known_table(name):
    cfg = _compose([f"table={name}"])
    assert cfg.table.name == name
    if name == "all":
        assert set(cfg.table.tables) == set(TABLES)
        for t in cfg.table.tables:  # the per-table overrides of table=all merge into each table's config
            assert table_config(t, cfg.table.overrides.get(t))["name"] == t
    else:
        assert name in TABLES


def _files_ok(res, n_rows: int | None = None) -> pd.DataFrame:
    files = res["files"]
    for k in ("md", "csv", "png"):
        assert files[k].is_file() and files[k].stat().st_size > 0, k
    df = pd.read_csv(files["csv"])
    if n_rows is not None:
        assert len(df) == n_rows
    assert files["md"].read_text() == res["markdown"] == markdown(res["result"])
    return df


def test_ofa_specialized_covers_every_published_note10_and_pixel1_subnet(tmp_path):
    cfg = table_config("ofa_specialized", {"algorithm": {"pop_size": 40, "n_gen": 3}})
    res = run_table("ofa_specialized", cfg, tmp_path, echo=lambda s: None)
    df = _files_ok(res, 15)  # 8 Note10 + 7 Pixel1 published OFA-MobileNetV3 subnets
    assert set(df["device"]) == {"note10", "pixel1"}
    # r >= 240 cannot be encoded and r < 160 was never trained: n/a, never a number
    outside = df[(df["r"] >= 240) | (df["r"] < 160)]
    assert len(outside) == 3 and outside["predictor_top1"].isna().all() and outside["passes"].isna().all()
    inside = df[(df["r"] < 240) & (df["r"] >= 160)]
    assert inside["predictor_top1"].between(0.6, 0.9).all()
    assert (inside["predicted_ms"] - inside["published_ms"]).abs().div(inside["published_ms"]).max() < 0.15
    # Each row's searched subnet is, recomputed from the search's own pareto.csv, the best front entry within the
    # published subnet's predicted latency.
    devices, supernets = {"note10": "note10", "pixel1": "pixel"}, {1.0: "ofa_mbv3_w10", 1.2: "ofa_mbv3_w12"}
    for r in df.itertuples():
        front = pd.read_csv(tmp_path / "search" / supernets[r.width] / devices[r.device] / "pareto.csv")
        within = front[front["latency_ms"] <= r.predicted_ms * (1 + 1e-6)]  # pareto.csv: 6 significant digits
        if within.empty:
            assert pd.isna(r.searched_top1)
        else:
            assert r.searched_top1 == pytest.approx(within["top1"].max(), rel=1e-5)
    ok = inside[inside["passes"] == True]  # noqa: E712  (pandas object column)
    assert (ok["searched_top1"] >= ok["predictor_top1"]).all() and (ok["searched_ms"] <= ok["predicted_ms"]).all()
    s = res["result"].summary
    assert s["scored"] == 12 and s["passing"] == len(ok) >= 1


def test_latency_fidelity_recomputes_each_device_from_its_validation_data(tmp_path):
    cfg = table_config("latency_fidelity", {"help_devices": ["help_v100_b1"], "few_shot_devices": ["pixel"],
                                            "live_n": 2, "live_repeats": 3, "live_sessions": 1})
    res = run_table("latency_fidelity", cfg, tmp_path, echo=lambda s: None)
    df = _files_ok(res)
    by = {(r.device, r.model): r for r in df.itertuples()}
    assert by[("pixel", "few-shot layer_cost (two_scales)")].n == 7
    v100 = by[("help_v100_b1", "learned ridge")]
    assert v100.n == 1000 and 0 < v100.mape < 0.2 and v100.spearman > 0.8
    assert by[("note10", "layer_cost (fitted on the per-layer table)")].n == 8
    assert ("host_cpu", "calibrated table (served)") in by
    assert df["mape"].dropna().between(0, 1).all() and df["within_10"].dropna().between(0, 1).all()


def test_latency_fidelity_live_row_scores_the_statistic_the_host_table_was_built_with(tmp_path, monkeypatch):
    import predictors.latency.build
    from paper_tables import latency_fidelity
    from predictors import load_latency_model
    from predictors.latency.table import load_meta
    from supernets.paths import LATENCY_TABLES_DIR

    built = load_meta(LATENCY_TABLES_DIR / "host_cpu" / "ofa_mbv3_tiny")["measurement"]["statistic"]
    assert built != "median"  # the shipped table stores p10: a median-scored live row would not be like with like
    model = load_latency_model("host_cpu", "ofa_mbv3_tiny")
    seen = []

    def measure(net, archs, settings, workdir, **kw):  # the table's statistic is exactly the model; the median not
        seen.append(settings)
        return [{"value_ms": float(p), "median_ms": 2 * float(p), "iqr_ms": 0.1 * float(p)} for p in model.predict(archs)]

    monkeypatch.setattr(predictors.latency.build, "measure_subnets", measure)
    cfg = table_config("latency_fidelity", {"help_devices": [], "few_shot_devices": [], "live_n": 4})
    res = latency_fidelity.build(cfg, tmp_path)
    assert [s.statistic for s in seen] == [built]
    live = next(r for r in res.rows if r["model"] == "calibrated table (served)")
    assert live["mape"] == pytest.approx(0.0) and built in live["data"]
    assert any(f"the {built} of its timed runs" in n for n in res.notes)


def test_latency_fidelity_resolves_help_aliases_and_rejects_unknown_selections(tmp_path):
    from paper_tables import latency_fidelity

    def build(**over):
        return latency_fidelity.build(table_config("latency_fidelity", {"few_shot_devices": [], "live_n": 0, **over}),
                                      tmp_path)

    rows = build(help_devices=["v100"]).rows  # configs/device/v100.yaml: alias_of help_v100_b64
    assert [r["device"] for r in rows if r["model"] == "learned ridge"] == ["help_v100_b64"]
    with pytest.raises(ValueError, match=r"\['help_v99_b1', 'pixel'\] are not HELP GPU devices.*help_v100_b64"):
        build(help_devices=["v100", "help_v99_b1", "pixel"])
    # every shipped host table has its calibration subnets; timm_tiny has no host table at all
    with pytest.raises(ValueError, match=r"'timm_tiny' has 0 end-to-end measurements.*'ofa_mbv3_tiny'"):
        build(help_devices=[], host_supernets=["timm_tiny"])


def test_predictor_quality_cross_validates_and_scores_the_transfer_predictor(tmp_path):
    cfg = table_config("predictor_quality", {"max_rows": 300, "folds": 2, "trainable": ["ridge", "mlp"],
                                             "recipe_overrides": {"mlp": {"epochs": 3, "hidden": [32]}}})
    cfg["resolution_transfer"] = {**cfg["resolution_transfer"], "recipes": ["ridge"],
                                  "splits": cfg["resolution_transfer"]["splits"][:1]}
    res = run_table("predictor_quality", cfg, tmp_path, echo=lambda s: None)
    df = _files_ok(res, 5)
    assert list(df["predictor"]) == ["ridge", "mlp", "ofa_pretrained", "ridge (onehot_stats)", "ridge (resolution_free)"]
    assert (df["n"].iloc[:3] == 300).all()
    held_out = df.iloc[3:]  # fitted at r=24 and 32 of the tiny supernet's measured subnets, scored at r=28 only
    assert held_out["protocol"].str.contains("test at r=28").all() and (held_out["kendall_tau"] > 0.3).all()
    ridge = df.iloc[0]
    assert ridge["kendall_tau"] > 0.5 and ridge["rmse_points"] > 0
    assert df.iloc[2]["kendall_tau"] > 0.5 and pd.isna(df.iloc[2]["time_s"])


def test_search_efficiency_compares_algorithms_on_one_reference_point(tmp_path):
    cfg = table_config("search_efficiency", {"algorithms": {
        "nsga2": {"pop_size": 20, "n_gen": 2}, "ofa_evolution": {"pop_size": 20, "n_gen": 1},
        "random": {"batch_size": 20, "n_gen": 2}, "optuna_nsga2": {"n_trials": 60, "batch_size": 20, "pop_size": 20}}})
    res = run_table("search_efficiency", cfg, tmp_path, echo=lambda s: None)
    df = _files_ok(res, 4)
    assert list(df["algorithm"]) == ["nsga2", "ofa_evolution", "random", "optuna_nsga2"]
    assert (df["hypervolume"] > 0).all() and (df["n_evals"] > 0).all()
    assert df.loc[df["algorithm"] == "ofa_evolution", "runs"].item() == 3
    # a single-run algorithm's hypervolume is the runner's own (same objectives, same reference point)
    for row in res["result"].rows:
        if row["runs"] == 1:
            doc = json.loads((tmp_path / "search" / row["algorithm"] / cfg["device"] / "pareto.json").read_text())
            assert row["hypervolume"] == pytest.approx(doc["hypervolume"], rel=1e-9), row["algorithm"]
    assert df["best_35"].notna().all()
    assert (df["best_15"].fillna(0) <= df["best_25"]).all() and (df["best_25"] <= df["best_35"]).all()


def test_small_scale_training_trains_and_evaluates_subnets(tmp_path):
    tiny = ["data=synthetic", "data.batch_size=8", "data.val_batch_size=8", "data.n_train=16", "data.n_val=8",
            "data.image_size=32", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1", "trainer.max_steps=1",
            "eval.calib_batches=1", "logger=none", "callbacks.progress_bar=null", "callbacks.lr_monitor=null",
            "trainer.enable_progress_bar=false", "eval.n_random=0"]
    cfg = table_config("small_scale_training", {"common_overrides": tiny, "roles": ["mid"],
                                                "methods": {"progressive_shrinking": None, "ps_ofa_sampling": None, "sandwich": None,
                                                            "from_scratch": {"epochs": 1}},
                                                "eval": {"calib_batches": 1, "max_val_batches": 1}})
    cfg["methods"] = {k: v for k, v in cfg["methods"].items() if v}
    res = run_table("small_scale_training", cfg, tmp_path, echo=lambda s: None)
    df = _files_ok(res, 1)
    assert df.loc[0, "method"] == "from_scratch" and df.loc[0, "runs"] == 1
    assert 0 <= df.loc[0, "top1_mid"] <= 1
    assert (tmp_path / "train" / "from_scratch_mid" / "checkpoints" / "last.ckpt").is_file()


def test_role_choices_pin_each_gene_to_its_largest_middle_or_smallest_value():
    import supernets
    from paper_tables.small_scale_training import role_choices

    space = supernets.create_supernet("ofa_mbv3_tiny").space
    assert role_choices(space, "mid") == {"r": [28], "d": [2], "ks": [5], "e": [4]}
    mx, mn = role_choices(space, "max"), role_choices(space, "min")
    assert mx["ks"] == [7] and mx["e"] == [6] and mn["ks"] == [3] and mn["d"] == [min(space.depths)]


@pytest.mark.parametrize("name", ["ofa_imagenet", "ofa_resnet_imagenet"])
def test_imagenet_tables_say_what_they_need_without_imagenet(tmp_path, name):
    res = run_table(name, table_config(name, {"data_root": str(tmp_path / "no_imagenet")}), tmp_path, echo=lambda s: None)
    df = _files_ok(res)
    assert df.loc[0, "phase"] == "teacher" and df.loc[0, "epochs"] == 180
    assert res["result"].summary["ran"] is False and res["result"].summary["gpu_hours"] > 100
    assert "GPU-hours" in res["markdown"] and "data_root" in res["markdown"]
    assert "trainer.accelerator=gpu trainer.devices=8 trainer.num_nodes=4" in res["markdown"]


@pytest.mark.parametrize("name", ["ofa_imagenet", "ofa_resnet_imagenet"])
def test_imagenet_tables_train_on_the_gpus_they_count(compose_config, name):
    cfg = table_config(name)
    job = compose_config("train", [f"experiment={cfg['experiment']}", "data.root=/imagenet", *cfg["train_overrides"]])
    t = job.trainer
    assert (t.accelerator, t.devices * t.num_nodes) == ("gpu", 32)  # trainer=ddp alone is 2 CPU processes


def test_table_all_writes_results_page_with_provenance(tmp_path):
    cfg = _compose(["table=all", "table.tables=[ofa_imagenet,ofa_resnet_imagenet]", f"out_dir={tmp_path}",
                    f"results_md={tmp_path / 'RESULTS.md'}"])
    reproduce(cfg)
    page = (tmp_path / "RESULTS.md").read_text()
    for needle in ("## ofa_imagenet", "## ofa_resnet_imagenet", "- command: `python scripts/reproduce.py table=all`"):
        assert needle in page
    for value in (r"- date: \d{4}-\d\d-\d\d \d\d:\d\d UTC\n", r"- machine: \S.*, \d+ logical cores, \S+ \S+\n",
                  r"- software: Python 3\.\d+\.\d+, numpy \d[^,]*, torch \d[^,]*, pymoo \d.*, BLAS \w+ [\d.]+ \(\w.*\)\n",
                  r"- commit: ([0-9a-f]{12}(\+dirty)?|unknown)\n"):
        assert len(re.findall(value, page)) == 2, value  # one per table
    assert (tmp_path / "ofa_imagenet" / "table.csv").is_file()


def test_reproduce_script_runs_a_table_from_the_command_line(tmp_path):
    proc = subprocess.run([sys.executable, "scripts/reproduce.py", "table=ofa_resnet_imagenet", f"out_dir={tmp_path}",
                           f"hydra.run.dir={tmp_path}"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "### Table 6: ofa_resnet on ImageNet" in proc.stdout
    assert (tmp_path / "table.md").is_file()


def test_unknown_table_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown table 'nope'"):
        table_config("nope")
