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
from collections.abc import Callable

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


def _command(name: str) -> Callable[[], None]:
    def main() -> None:
        run_file(COMMANDS[name])

    main.__name__ = main.__qualname__ = name.removeprefix("oncenas-").replace("-", "_")
    main.__doc__ = f"``{name}``: ``python {COMMANDS[name]}`` with this command's arguments."
    return main


train = _command("oncenas-train")
search = _command("oncenas-search")
pipeline = _command("oncenas-pipeline")
reproduce = _command("oncenas-reproduce")
build_latency_table = _command("oncenas-build-latency-table")
build_accuracy_dataset = _command("oncenas-build-accuracy-dataset")
train_predictor = _command("oncenas-train-predictor")
fit_few_shot = _command("oncenas-fit-few-shot")
convert_ofa_checkpoint = _command("oncenas-convert-ofa-checkpoint")
demo = _command("oncenas-demo")
