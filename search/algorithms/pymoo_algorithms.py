"""pymoo's own algorithms (NSGA-II, NSGA-III, SMS-EMOA, AGE-MOEA) on the search problem, with the
arch-level operators. They resume by replaying: the evaluator's restored store makes every evaluation
of the replayed generations a cache hit, so no evaluated arch is lost or recomputed."""

from __future__ import annotations

from pymoo.core.callback import Callback
from pymoo.optimize import minimize

from search.algorithms.base import SearchAlgorithm, SearchContext
from search.algorithms.registry import register_algorithm
from search.operators import ArchCrossover, ArchDuplicateElimination, ArchMutation, ArchSampling

__all__ = ["PYMOO_ALGORITHMS", "PymooAlgorithm"]

PYMOO_ALGORITHMS = ("pymoo_nsga2", "nsga3", "smsemoa", "agemoea")


class PymooAlgorithm(SearchAlgorithm):
    """A pymoo algorithm by name (``pymoo_nsga2``, ``nsga3`` (many objectives), ``smsemoa``, ``agemoea``)."""

    def __init__(self, *, kind: str = "nsga3", pop_size: int = 200, n_gen: int = 100, mutation_prob: float = 0.1,
                 stage_prob: float = 0.5, crossover_prob: float = 0.9) -> None:
        super().__init__(n_gen=n_gen)
        if kind not in PYMOO_ALGORITHMS:
            raise ValueError(f"unknown pymoo algorithm {kind!r}; choose one of {list(PYMOO_ALGORITHMS)}")
        self.kind = kind
        self.name = kind
        self.pop_size = int(pop_size)
        self.mutation_prob = float(mutation_prob)
        self.stage_prob = float(stage_prob)
        self.crossover_prob = float(crossover_prob)

    def _build(self, ctx: SearchContext):
        ops = {
            "pop_size": self.pop_size,
            "sampling": ArchSampling(ctx.layout),
            "crossover": ArchCrossover(ctx.layout, stage_prob=self.stage_prob, prob=self.crossover_prob),
            "mutation": ArchMutation(ctx.layout, unit_prob=self.mutation_prob),
            "eliminate_duplicates": ArchDuplicateElimination(ctx.problem.ev.space),
        }
        if self.kind == "pymoo_nsga2":
            from pymoo.algorithms.moo.nsga2 import NSGA2

            return NSGA2(**ops)
        if self.kind == "smsemoa":
            from pymoo.algorithms.moo.sms import SMSEMOA

            return SMSEMOA(**ops)
        if self.kind == "agemoea":
            try:
                from pymoo.algorithms.moo.age import AGEMOEA
            except Exception as e:  # pymoo raises a bare Exception when numba is missing
                raise ValueError(f"algorithm=agemoea needs pymoo's optional dependency numba ({e}); "
                                 "use algorithm=nsga3 for many objectives") from None
            return AGEMOEA(**ops)
        from pymoo.algorithms.moo.nsga3 import NSGA3
        from pymoo.util.ref_dirs import get_reference_directions

        n_obj = ctx.problem.n_obj
        partitions = {1: 1, 2: 99, 3: 12, 4: 6}.get(n_obj, 4)
        ref_dirs = get_reference_directions("das-dennis", n_obj, n_partitions=partitions)
        ops["pop_size"] = max(self.pop_size, len(ref_dirs))
        return NSGA3(ref_dirs=ref_dirs, **ops)

    def run(self, ctx: SearchContext) -> None:
        algorithm = self._build(ctx)

        class _Gen(Callback):
            def notify(self, algorithm):  # pymoo counts generations from 1
                ctx.end_generation(algorithm.n_gen - 1, None)

        minimize(ctx.problem, algorithm, ("n_gen", self.n_gen + 1), seed=ctx.seed, callback=_Gen(), verbose=False,
                 copy_algorithm=False)


# one registered entry per pymoo algorithm (timm style): create_algorithm("nsga3", pop_size=...)
@register_algorithm
def pymoo_nsga2(**kwargs) -> PymooAlgorithm:
    return PymooAlgorithm(kind="pymoo_nsga2", **kwargs)


@register_algorithm
def nsga3(**kwargs) -> PymooAlgorithm:
    return PymooAlgorithm(kind="nsga3", **kwargs)


@register_algorithm
def smsemoa(**kwargs) -> PymooAlgorithm:
    return PymooAlgorithm(kind="smsemoa", **kwargs)


@register_algorithm
def agemoea(**kwargs) -> PymooAlgorithm:
    return PymooAlgorithm(kind="agemoea", **kwargs)
