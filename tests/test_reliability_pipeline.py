"""scripts/pipeline.py reruns a finished step whose options changed, and what depends on it (issue #27 item 5);
an out path with a comma is refused before the first step (item 7)."""

from __future__ import annotations

import pytest

from tests.script_utils import load_script, script_config


@pytest.fixture
def pipeline(monkeypatch):
    mod = load_script("pipeline")
    ran: list[list[str]] = []
    monkeypatch.setattr(mod, "_run", ran.append)  # the commands, not hours of training
    mod.ran = ran
    return mod


def _steps(ran):
    return [next(a.split("/")[-1] for a in cmd if a.endswith(".py")) for cmd in ran]


def test_a_finished_step_reruns_when_its_options_change_and_so_does_what_follows(pipeline, tmp_path):
    for f in ("accuracy.csv", "predictor.pth", "train/checkpoints/last.ckpt"):  # earlier steps' outputs
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("")
    run = [f"out={tmp_path}", "steps=[predictor,search]"]
    pipeline.main(script_config("pipeline", *run, "predictor=ridge"))
    assert _steps(pipeline.ran) == ["train_predictor.py", "search.py"] and "resume=true" in pipeline.ran[1]
    pipeline.ran.clear()
    pipeline.main(script_config("pipeline", *run, "predictor=ridge"))  # same options: nothing to do
    assert pipeline.ran == []
    pipeline.main(script_config("pipeline", *run, "predictor=mlp"))
    assert _steps(pipeline.ran) == ["train_predictor.py", "search.py"]
    assert "predictor=mlp" in pipeline.ran[0]
    assert "overwrite=true" in pipeline.ran[1] and "resume=true" not in pipeline.ran[1]  # not resumed as another search
    pipeline.ran.clear()
    pipeline.main(script_config("pipeline", *run, "predictor=mlp", "top_k=2"))  # an option of the search only
    assert _steps(pipeline.ran) == ["search.py"]


def test_an_out_path_with_a_comma_is_refused_before_any_step(pipeline, tmp_path):
    with pytest.raises(ValueError, match=r"out=.*a,b contains a comma"):
        pipeline.main(script_config("pipeline", f"out='{tmp_path / 'a,b'}'", "steps=predictor"))
    assert pipeline.ran == [] and not (tmp_path / "a,b").exists()


def test_the_search_step_does_not_probe_again_a_table_the_latency_step_just_refreshed(pipeline, tmp_path):
    for f in ("predictor.pth", "train/checkpoints/last.ckpt"):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("")
    pipeline.main(script_config("pipeline", f"out={tmp_path}", "steps=search"))  # no latency step: the repository's table, probed by search.py
    assert not any(a.startswith(("latency_probe=", "latency_tables_dir=")) for a in pipeline.ran[0])
    pipeline.ran.clear()
    tables = tmp_path / "latency_tables"
    pipeline._mark(tmp_path, "latency", {"how": "recalibrated on 20 whole subnets", "tables_dir": str(tables)})
    pipeline.main(script_config("pipeline", f"out={tmp_path}", "steps=search", "top_k=2"))
    assert f"latency_tables_dir={tables}" in pipeline.ran[0] and "latency_probe=0" in pipeline.ran[0]
