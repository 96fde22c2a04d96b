"""One command-line dialect: train.py, search.py and every script under scripts/ are Hydra apps that answer
``--help`` with their options, take ``key=value`` overrides (``--cfg job`` shows them applied), and run from any
working directory; the console entry points of pyproject.toml run the same files.

The apps run in this process as ``__main__`` (importing torch, Lightning and Hydra once, not once per script: a
subprocess per script took 10-25 s each on a loaded 2-core host), through their own ``@hydra.main`` with
``sys.argv`` set as a shell would set it."""

from __future__ import annotations

import re
import runpy
import shlex
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from supernets.paths import CONFIG_DIR, REPO_ROOT

SCRIPTS = sorted(p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "scripts").glob("*.py"))
APPS = ["train.py", "search.py", *SCRIPTS]
#: where an app's config lives when it is not configs/scripts/<script name>.yaml (these use config groups)
CONFIGS = {"train.py": (CONFIG_DIR, "train"), "search.py": (CONFIG_DIR, "search"),
           "scripts/reproduce.py": (CONFIG_DIR / "reproduce", "reproduce"),
           "scripts/train_predictor.py": (CONFIG_DIR, "train_predictor")}


def _config_of(app: str):
    config_dir, name = CONFIGS.get(app, (CONFIG_DIR / "scripts", Path(app).stem))
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        return compose(config_name=name)


def _invoke(app: str, args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """``python <app> *args`` in this process, as the entry points run it: (exit status, stdout, stderr).
    (Run as ``__main__``: Hydra reads a relative config_path beside the file only for a main script.)"""
    GlobalHydra.instance().clear()
    monkeypatch.setattr(sys, "argv", [str(REPO_ROOT / app), *args])
    capsys.readouterr()
    try:
        runpy.run_path(str(REPO_ROOT / app), run_name="__main__")
        code = 0
    except SystemExit as e:
        code = e.code or 0
    finally:
        GlobalHydra.instance().clear()
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _an_override(cfg) -> tuple[str, object]:
    """A top-level option and a value other than its default, of the same type (int, else bool, else string)."""
    options = OmegaConf.to_container(cfg)  # unresolved; a mandatory option reads '???'
    for key, value in options.items():
        if isinstance(value, int) and not isinstance(value, bool):
            return key, value + 7
    for key, value in options.items():
        if isinstance(value, bool):
            return key, not value
    for key, value in options.items():
        if isinstance(value, str) and value != "???" and "${" not in value:
            return key, f"{value}_cli"
    raise AssertionError(f"no int, bool or string option to override in {list(cfg)}")


def test_every_script_has_its_config_file():
    for app in SCRIPTS:
        if app not in CONFIGS:
            assert (CONFIG_DIR / "scripts" / f"{Path(app).stem}.yaml").is_file(), app


@pytest.mark.parametrize("app", APPS)
def test_app_answers_help_with_its_options_and_takes_a_key_value_override(app, monkeypatch, capsys):
    cfg = _config_of(app)
    code, out, err = _invoke(app, ["--help"], monkeypatch, capsys)
    assert code == 0, err
    for key in cfg:
        assert re.search(rf"^'?{re.escape(str(key))}'?:", out, re.M), f"{app} --help does not show {key}:\n{out}"
    key, value = _an_override(cfg)
    code, out, err = _invoke(app, ["--cfg", "job", f"{key}={str(value).lower() if isinstance(value, bool) else value}"],
                             monkeypatch, capsys)
    assert code == 0, err
    assert yaml.safe_load(out)[key] == value, f"{app}: {key}={value} did not reach the config"


def test_a_bad_value_or_an_unknown_key_is_refused_naming_the_key(monkeypatch, capsys):
    # the checks run where the options enter the script, before any work; Hydra prints the message, status 1
    for app, override, message in (
            ("scripts/bench_search.py", "seeds=x", "seeds must be an integer >= 0, got 'x'"),
            ("scripts/bench_elastic.py", "impl=[tf]", "impl must list some of ['ofa', 'oncenas'] (e.g. impl=[oncenas,ofa]), got ['tf']"),
            ("scripts/pipeline.py", "latency=often", "latency must be one of ['recalibrate', 'rebuild', 'keep'], got 'often'"),
            ("scripts/demo.py", "nn=3", "Could not override 'nn'")):
        code, _, err = _invoke(app, [override], monkeypatch, capsys)
        assert code == 1 and message in err, (app, err)


def test_bench_elastic_children_get_the_drivers_options_and_their_own_impl():
    from tests.script_utils import load_script, script_config

    bench = load_script("bench_elastic")
    args = bench._args(script_config("bench_elastic", "threads=1", "repeats=3", "impl=[oncenas,ofa]"))
    cmd = bench._child_command(args, "ofa")
    assert "threads=1" in cmd and "repeats=3" in cmd and cmd[-2:] == ["json=true", "impl=[ofa]"]
    child = bench._args(script_config("bench_elastic", *cmd[2:]))  # the child parses what it was given
    assert child.json and child.impl == ["ofa"] and child.threads == 1 and child.repeats == 3


def test_no_app_parses_arguments_with_argparse():
    for app in [*APPS, *(p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "oncenas").glob("*.py"))]:
        text = (REPO_ROOT / app).read_text()
        assert not re.search(r"^\s*(import argparse|from argparse import)", text, re.M), app


def test_entry_points_name_the_apps_and_run_them_from_any_working_directory(tmp_path, monkeypatch, capsys):
    from oncenas import cli

    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == set(cli.COMMANDS)
    for command, target in scripts.items():
        module, _, func = target.partition(":")
        assert module == "oncenas.cli" and callable(getattr(cli, func)), command
        assert (REPO_ROOT / cli.COMMANDS[command]).is_file(), command
    # `oncenas-train experiment=tiny_sandwich seed=3 --cfg job` in a folder without configs/: the experiment
    # composes without `+`, the override lands, and nothing is written there
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["oncenas-train", "experiment=tiny_sandwich", "seed=3", "--cfg", "job"])
    GlobalHydra.instance().clear()
    capsys.readouterr()
    try:
        cli.train()
    finally:
        GlobalHydra.instance().clear()
    job = yaml.safe_load(capsys.readouterr().out)
    assert job["seed"] == 3 and job["schedule"]["name"] == "sandwich" and job["task_name"] == "tiny_sandwich"
    assert not list(tmp_path.iterdir())


def _readme_commands() -> list[str]:
    """Every command line with options that the README gives for train.py, search.py or a script (in code blocks
    or inline; one without options is the app's defaults, composed above)."""
    text = (REPO_ROOT / "README.md").read_text()
    found = re.findall(r"(?:^|`)((?:python3? )?(?:train\.py|search\.py|scripts/[a-z_]+\.py)[^`#\n]*)", text, re.M)
    # the README's templates for a device or supernet of the reader's own (configs/device/my_board.yaml ...; the
    # one-YAML-file examples of a device, predictor and algorithm are run as written by tests/test_add_components.py)
    own = ("predictor=ofa_resnet50_pretrained device=my_board", "supernet=<any>", "predictor=my_predictor")
    return sorted({c.strip() for c in found if "=" in c and not any(o in c for o in own)})


def test_readme_commands_compose(monkeypatch, capsys):
    commands = _readme_commands()
    assert len(commands) > 25 and "python train.py experiment=ofa_resnet" in " ".join(commands)
    for command in commands:
        parts = shlex.split(re.sub(r"<[^>]*>", "x", command))
        parts = parts[1:] if parts[0].startswith("python") else parts
        code, _, err = _invoke(parts[0], [*parts[1:], "--cfg", "job"], monkeypatch, capsys)
        assert code == 0, f"README: {command}\n{err}"
