"""Hardware-aware multi-objective search over a supernet's space: the pymoo problem, arch-level operators,
algorithms (NSGA-II default, NSGA-III/SMS-EMOA/AGE-MOEA, random, OFA's constrained evolution, Optuna with
shared storage), the Pareto archive, hypervolume, reports and export. ``run(cfg)`` is what ``search.py`` calls.
"""

from search.evaluator import ArchEvaluator
from search.objectives import DeviceObjectives
from search.pareto import ParetoArchive, hypervolume, non_dominated
from search.problem import ArchProblem
from search.runner import run

__all__ = [
    "ArchEvaluator",
    "ArchProblem",
    "DeviceObjectives",
    "ParetoArchive",
    "hypervolume",
    "non_dominated",
    "run",
]
