"""Console entry points (``[project.scripts]`` in pyproject.toml): ``oncenas-train experiment=ofa_resnet`` is
``python train.py experiment=ofa_resnet``, from any working directory.

Each command runs the repository's own file (train.py, search.py, scripts/<name>.py) as ``__main__``, so the
file stays the one place that defines the command: its ``@hydra.main`` reads its config from a path relative to
the file (configs/ beside it), never from the working directory, and takes the same ``key=value`` overrides,
``--help`` and ``--cfg job``. The files live in the checkout, so the commands need the editable install the
README uses (``pip install -e .``).
"""

from __future__ import annotations

import runpy
import sys

from supernets.paths import REPO_ROOT

__all__ = ["COMMANDS", "build_accuracy_dataset", "build_latency_table", "convert_ofa_checkpoint", "demo",
           "fit_few_shot", "pipeline", "reproduce", "search", "train", "train_predictor"]

#: console command -> the file it runs (relative to the repository root)
COMMANDS = {
    "oncenas-train": "train.py",
    "oncenas-search": "search.py",
    "oncenas-pipeline": "scripts/pipeline.py",
    "oncenas-reproduce": "scripts/reproduce.py",
    "oncenas-build-latency-table": "scripts/build_latency_table.py",
    "oncenas-build-accuracy-dataset": "scripts/build_accuracy_dataset.py",
    "oncenas-train-predictor": "scripts/train_predictor.py",
    "oncenas-fit-few-shot": "scripts/fit_few_shot.py",
    "oncenas-convert-ofa-checkpoint": "scripts/convert_ofa_checkpoint.py",
    "oncenas-demo": "scripts/demo.py",
}


def run_file(relpath: str) -> None:
    """Run ``REPO_ROOT/relpath`` as ``python <file> <this process's arguments>`` would."""
    path = REPO_ROOT / relpath
    if not path.is_file():
        raise SystemExit(f"{path} is missing: the oncenas commands run the checkout's files; install the "
                         f"repository with `pip install -e .` (an editable install)")
    sys.argv[0] = str(path)  # Hydra names the job, and prints usage, after the file
    runpy.run_path(str(path), run_name="__main__")


def train() -> None:
    run_file(COMMANDS["oncenas-train"])


def search() -> None:
    run_file(COMMANDS["oncenas-search"])


def pipeline() -> None:
    run_file(COMMANDS["oncenas-pipeline"])


def reproduce() -> None:
    run_file(COMMANDS["oncenas-reproduce"])


def build_latency_table() -> None:
    run_file(COMMANDS["oncenas-build-latency-table"])


def build_accuracy_dataset() -> None:
    run_file(COMMANDS["oncenas-build-accuracy-dataset"])


def train_predictor() -> None:
    run_file(COMMANDS["oncenas-train-predictor"])


def fit_few_shot() -> None:
    run_file(COMMANDS["oncenas-fit-few-shot"])


def convert_ofa_checkpoint() -> None:
    run_file(COMMANDS["oncenas-convert-ofa-checkpoint"])


def demo() -> None:
    run_file(COMMANDS["oncenas-demo"])
