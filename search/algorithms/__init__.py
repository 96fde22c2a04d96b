"""Search algorithms: a lean NSGA-II (default), random search, OFA's constrained evolution, pymoo's
algorithms (NSGA-II, NSGA-III, SMS-EMOA, AGE-MOEA) and Optuna samplers with shared storage."""

from search.algorithms.base import SearchAlgorithm, SearchContext
from search.algorithms.linas import LINAS
from search.algorithms.nsga2 import NSGA2
from search.algorithms.ofa_evolution import OFAEvolution
from search.algorithms.optuna_search import OptunaSearch
from search.algorithms.pymoo_algorithms import PymooAlgorithm
from search.algorithms.random_search import RandomSearch

__all__ = ["LINAS", "NSGA2", "OFAEvolution", "OptunaSearch", "PymooAlgorithm", "RandomSearch", "SearchAlgorithm", "SearchContext"]
