"""Optuna samplers (NSGA-II, TPE) over the encoded space, with shared storage.

Each column of the space is one integer parameter (its choice index). Trials are asked in batches so the
predictors still see whole batches. With ``storage="sqlite:///study.db"`` (any RDB URL) or a journal file
(``journal:///path/study.log`` or a path ending in ``.log``/``.journal``), several processes work on one
study: ``n_workers`` forks them here, and a second ``search.py`` launched on the same storage joins the
same study. The reported front is the union: every completed trial of the study, whoever ran it.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import multiprocessing as mp
import os
import socket
from typing import Any

import numpy as np

from search.algorithms.base import SearchAlgorithm, SearchContext
from search.algorithms.registry import register_algorithm

__all__ = ["OptunaSearch", "open_storage"]

SAMPLERS = ("nsga2", "tpe")


#: the study's user attribute holding its space's choices per column
SPACE_ATTR = "oncenas_space_choices"


def space_choices(space) -> dict[str, list]:
    """Each column's choices by label (``r``, ``d[0]``, ...): what encoded choice indices mean."""
    return {c.label: list(c.choices) for c in space.columns}


def choices_key(space) -> str:
    """A short hash of each column's choices: equal for the same space, different when a choice differs."""
    text = json.dumps(list(space_choices(space).items()), default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def open_storage(storage: str | None):
    """An Optuna storage from a URL/path: RDB URLs as is, journal files as ``JournalStorage``."""
    if storage is None:
        return None
    import optuna

    s = str(storage)
    if s.startswith("journal://"):
        path = s[len("journal://"):]  # journal:///abs/path or journal://relative/path
    elif s.endswith((".log", ".journal")) and "://" not in s:
        path = s
    else:
        return s  # an RDB URL (sqlite:///..., postgresql://...): Optuna opens it
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(path))


def _constraints(trial) -> list[float]:
    """``constraints_func`` for Optuna < 5.0: the violations :meth:`OptunaSearch._optimize` stored on the trial."""
    return list(trial.user_attrs.get("constraints", []))


def _trials_take_constraints() -> bool:
    """Whether trials record their own constraints (``Trial.set_constraint``, Optuna >= 5.0, which deprecates
    the samplers' ``constraints_func``)."""
    import optuna

    return hasattr(optuna.trial.Trial, "set_constraint")


@register_algorithm
class OptunaSearch(SearchAlgorithm):
    """Optuna study over the space.

    Args:
        sampler: ``nsga2`` or ``tpe``.
        n_trials: trials this process (and each extra worker) runs.
        batch_size: trials asked together and evaluated in one predictor call.
        storage: None (in memory), an RDB URL or a journal file (see module doc).
        study_name: defaults to one name per supernet, device, objectives and space choices (a short hash),
            so relaunches join it; a stored study of other choices is refused.
        n_workers: processes working on the study (this one included); needs a storage when > 1.
        pop_size: NSGA-II sampler population.
    """

    name = "optuna"

    def __init__(self, *, sampler: str = "nsga2", n_trials: int = 1000, batch_size: int = 50, storage: str | None = None,
                 study_name: str | None = None, n_workers: int = 1, pop_size: int = 50) -> None:
        self.batch_size = max(1, int(batch_size))
        super().__init__(n_gen=max(0, math.ceil(int(n_trials) / self.batch_size) - 1))
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown optuna sampler {sampler!r}; choose one of {list(SAMPLERS)}")
        if int(n_workers) > 1 and storage is None:
            raise ValueError("optuna with n_workers > 1 needs a shared storage, e.g. "
                             "algorithm.storage=sqlite:///study.db or algorithm.storage=study.log (journal file)")
        self.sampler = sampler
        self.n_trials = int(n_trials)
        self.storage = storage
        self.study_name = study_name
        self.n_workers = int(n_workers)
        self.pop_size = int(pop_size)

    # ------------------------------------------------------------------------------------ study
    def _make_sampler(self, seed: int, constrained: bool):
        import optuna

        cfunc = _constraints if constrained and not _trials_take_constraints() else None
        if self.sampler == "nsga2":
            return optuna.samplers.NSGAIISampler(population_size=self.pop_size, seed=seed, constraints_func=cfunc)
        # Optuna < 4.9 warns whenever multivariate TPE falls back to independent sampling unless told not to; 4.9
        # made silence the default and deprecated the argument (passing it warns): pass it only where it defaults on.
        option = inspect.signature(optuna.samplers.TPESampler).parameters.get("warn_independent_sampling")
        quiet = {"warn_independent_sampling": False} if option is not None and option.default is True else {}
        return optuna.samplers.TPESampler(seed=seed, constraints_func=cfunc, multivariate=True, **quiet)

    def study(self, ctx: SearchContext, seed: int):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        obj = ctx.problem.obj
        space = ctx.problem.ev.space
        # trials hold choice indices, which mean other archs under other choices: the default name is per space
        base = ctx.options.get("study_name", "oncenas")
        name = self.study_name or f"{base}-{choices_key(space)}"
        storage = open_storage(self.storage)
        if self.study_name is None and storage is not None:
            names = set(optuna.get_all_study_names(storage))
            if name not in names and base in names:
                name = base  # a study saved under the default name it had before the hash: join it (checked below)
        study = optuna.create_study(
            study_name=name, storage=storage, load_if_exists=True,
            directions=["maximize" if n == "top1" else "minimize" for n in obj.names],
            sampler=self._make_sampler(seed, obj.n_constr > 0),
        )
        self._check_space(study, name, space)
        return study

    def _check_space(self, study, name: str, space) -> None:
        """Refuse a stored study of another space (before any trial runs); record this one's choices."""
        import optuna

        mine = space_choices(space)
        theirs = study.user_attrs.get(SPACE_ATTR)
        where = f"optuna study {name!r} in storage {self.storage}"
        fix = "give another algorithm.study_name or algorithm.storage"
        if theirs is not None:
            diff = [c for c in dict.fromkeys([*theirs, *mine]) if theirs.get(c) != mine.get(c)]
            if diff:
                raise ValueError(f"{where} was searched over other choices ("
                                 + "; ".join(f"{c}: study {theirs.get(c)}, this search {mine.get(c)}" for c in diff[:3])
                                 + f"); its trials' choice indices would mean other archs: {fix}")
            return
        if self.storage is None:  # an in-memory study is new: nothing to check
            study.set_user_attr(SPACE_ATTR, mine)
            return
        # a study written before the choices were recorded: its parameters must at least fit this space
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            for lab, n in zip(mine, space.n_choices):
                dist = t.distributions.get(lab)
                if dist is None or getattr(dist, "high", None) != int(n) - 1:
                    raise ValueError(f"{where} has trials of another space (gene {lab}: {dist}, this search has "
                                     f"{int(n)} choices {mine[lab]}): {fix}")
        study.set_user_attr(SPACE_ATTR, mine)

    def _optimize(self, ctx: SearchContext, study, *, report: bool) -> None:
        space, obj, ev = ctx.problem.ev.space, ctx.problem.obj, ctx.problem.ev
        labels = [c.label for c in space.columns]
        worker = f"{socket.gethostname()}:{os.getpid()}"
        on_trial = _trials_take_constraints()
        done = 0
        gen = 0
        while done < self.n_trials:
            k = min(self.batch_size, self.n_trials - done)
            trials = [study.ask() for _ in range(k)]
            X = np.array([[t.suggest_int(lab, 0, int(n) - 1) for lab, n in zip(labels, space.n_choices)]
                          for t in trials], dtype=np.int64)
            ids = ctx.evaluate(X)
            vals = np.stack([obj.values(ev, ids, n) for n in obj.names], axis=1)
            G = obj.G(ev, ids)
            for i, t in enumerate(trials):
                if obj.n_constr and on_trial:
                    for name, g in zip(obj.constraints, G[i]):
                        t.set_constraint(name, float(g))
                elif obj.n_constr:
                    t.set_user_attr("constraints", [float(g) for g in G[i]])
                t.set_user_attr("arch", str(space.decode(X[i : i + 1])[0]))
                t.set_user_attr("worker", worker)
                study.tell(t, [float(v) for v in vals[i]])
            done += k
            if report:
                ctx.end_generation(gen, None)
            gen += 1

    def run(self, ctx: SearchContext) -> None:
        study = self.study(ctx, ctx.seed)
        workers: list[Any] = []
        if self.n_workers > 1:
            # spawn, not fork: a forked child of a process that ran torch/OpenMP code can hang
            mpc = mp.get_context("spawn")
            ev = ctx.problem.ev
            payload = (ev.space, ev.accuracy, ev.latency, ev.macs_params, ctx.problem.obj, dict(ctx.options))
            for rank in range(1, self.n_workers):
                p = mpc.Process(target=_worker, args=(self, payload, ctx.seed + 1000 * rank), daemon=False)
                p.start()
                workers.append(p)
        try:
            self._optimize(ctx, study, report=True)
        finally:
            for p in workers:
                p.join()
        bad = [p.exitcode for p in workers if p.exitcode != 0]
        if bad:
            raise RuntimeError(f"{len(bad)} optuna worker process(es) failed (exit codes {bad}); see their output above")
        self.collect(ctx, study)

    def collect(self, ctx: SearchContext, study) -> int:
        """Evaluate every completed trial of the study (all workers') so the archive holds the union."""
        import optuna

        space = ctx.problem.ev.space
        labels = [c.label for c in space.columns]
        trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if trials:
            X = np.array([[t.params[lab] for lab in labels] for t in trials], dtype=np.int64)
            ctx.evaluate(X)
        ctx.options["n_study_trials"] = len(trials)
        return len(trials)


def _worker(search: OptunaSearch, payload: tuple, seed: int) -> None:
    """An extra study worker (a spawned process): rebuilds the problem from the pickled models."""
    from search.evaluator import ArchEvaluator
    from search.operators import gene_layout
    from search.problem import ArchProblem

    space, accuracy, latency, macs_params, obj, options = payload
    ev = ArchEvaluator(space, accuracy, latency, macs_params=macs_params)
    problem = ArchProblem(ev, obj)
    ctx = SearchContext(problem=problem, layout=gene_layout(space), rng=np.random.default_rng(seed), seed=seed,
                        end_generation=lambda gen, state: None, options=options)
    study = search.study(ctx, seed)
    search._optimize(ctx, study, report=False)
