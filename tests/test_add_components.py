"""README's "Add a device, a predictor or an algorithm": the three files (and the module) exactly as the README
shows them, in a folder of the user's own on ``hydra.searchpath``, drive a real search."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pandas as pd
import pytest

from supernets.paths import LATENCY_TABLES_DIR, REPO_ROOT

BLOCK = re.compile(r"```(yaml|python)\n# (configs/[a-z_]+/[a-z_]+\.yaml|[a-z_]+\.py)\n(.*?)```", re.S)


def readme_files() -> dict[str, str]:
    """``{relative path: text}`` of the README's example blocks whose first line names their file."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    return {path: f"# {path}\n{body}" for _, path, body in BLOCK.findall(text)}


def test_readme_shows_one_file_per_component():
    files = readme_files()
    assert {"configs/device/my_phone.yaml", "configs/predictor/my_predictor.yaml",
            "configs/algorithm/budgeted_random.yaml", "my_search.py"} <= set(files)


@pytest.fixture
def user_folder(tmp_path, monkeypatch):
    """The README's files under tmp_path (configs in <tmp>/configs/<group>/, the module on sys.path)."""
    for rel, text in readme_files().items():
        dest = tmp_path / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_a_device_a_predictor_and_an_algorithm_added_as_files_run_a_search(user_folder, tmp_path):
    from hydra import compose

    import search
    from predictors import load_latency_model, load_predictor
    from predictors.accuracy.models import build_predictor
    from search.runner import from_hydra
    from supernets.compose import hydra_on

    # my_phone's data: the Pixel1's few-shot model under the new name; my_predictor: a ridge model fitted on
    # OFA's published predictor over 300 random archs, saved as scripts/train_predictor.py saves one
    tables = tmp_path / "tables"
    shutil.copytree(LATENCY_TABLES_DIR / "pixel", tables / "my_phone")
    shutil.copytree(LATENCY_TABLES_DIR / "note10", tables / "note10")
    ofa = load_predictor("ofa_pretrained")
    X = ofa.space.sample_encoded(np.random.default_rng(0), 300)
    ridge = build_predictor({"kind": "ridge", "features": "onehot_stats", "alpha": 1.0}, ofa.space,
                            supernet="ofa_mbv3_w12").fit(X, ofa.predict(X))
    artefact = ridge.save(tmp_path / "outputs" / "my_predictor.pth")

    with hydra_on():
        cfg = compose("search", overrides=[
            f"hydra.searchpath=[file://{user_folder / 'configs'}]", "device=[my_phone,note10]",
            "predictor=my_predictor", f"predictor.artefact={artefact}",  # the README's path, under tmp_path
            "algorithm=budgeted_random", "algorithm.budget=60", "algorithm.batch_size=20",
            f"latency_tables_dir={tables}", f"out_dir={tmp_path / 'out'}", "probe=0", "progress=false",
            "plot=false"])
    res = search.run(from_hydra(cfg))
    assert [res["devices"][d]["status"] for d in ("my_phone", "note10")] == ["ok", "ok"]
    assert res["devices"]["my_phone"]["n_evals"] <= 60  # the new algorithm's budget
    front = pd.read_csv(tmp_path / "out" / "my_phone" / "pareto.csv")
    archs = [ofa.space.parse(a) for a in front["arch"]]
    np.testing.assert_allclose(front["top1"], ridge.predict(archs), rtol=1e-5)  # the new predictor's figures
    pixel = load_latency_model("pixel", "ofa_mbv3_w12", space=ofa.space)
    np.testing.assert_allclose(front["latency_ms"], pixel.predict(archs), rtol=1e-5)  # the new device's data
