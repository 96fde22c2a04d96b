"""NSGA-II (Deb et al., 2002) as a lean loop over numpy arrays.

Stock pymoo NSGA-II spends most of its time in mating bookkeeping (Population objects, per-individual
duplicate refills). This loop keeps the population as an integer matrix, uses the arch-level operators
of :mod:`search.operators`, judges duplicates against every arch ever evaluated (so each evaluation is a
new arch), and ranks with pymoo's non-dominated sorting and crowding distance. Constraints follow Deb's
rule: feasible before infeasible, infeasible ranked by total violation.

Screening (``screen > 1``; configs/algorithm/nsga2.yaml's default): the accuracy predictor costs most of an
evaluation (OFA's MLP, ~370k multiply-adds per arch; in float32 with outputs rounded so that fronts don't depend on
the CPU's BLAS kernels, see :mod:`predictors.accuracy.numpy_mlp`), so each generation breeds ``screen`` times more
children than it evaluates and a ridge fit of top-1 on the one-hot arch (:class:`LinearSurrogate`, ~50 additions per
arch) with the latency model's exact latency picks the ones most likely to lift the front. On Note10 with OFA's
predictor, 14k screened evaluations came closer to the best known top-1 per budget than 20k unscreened ones, and as
close as 60k unscreened ones had (scripts/bench_search.py seeds=20 baseline=true; RESULTS.md, default_front).
"""

from __future__ import annotations

import logging

import numpy as np
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from search.algorithms.base import SearchAlgorithm, SearchContext
from search.algorithms.registry import register_algorithm
from search.operators import crossover, mutate, sample_genomes, sample_ladder

__all__ = ["NSGA2", "LinearSurrogate", "crowding_by_front", "rank_and_crowding"]

_NDS = NonDominatedSorting()
log = logging.getLogger(__name__)


def crowding_by_front(F: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Crowding distance of every row within its front, all fronts at once.

    Same values as pymoo's ``calc_crowding_distance`` applied front by front (boundary points ``inf``,
    an objective constant over a front contributes 0), but one sort per objective instead of one call per
    front: with a population of 100-200 most fronts hold a few points and the per-call overhead dominated.
    """
    n, m = F.shape
    cd = np.zeros(n)
    if n == 0:
        return cd
    for j in range(m):
        o = np.lexsort((F[:, j], rank))
        f, r = F[o, j], rank[o]
        same = r[1:] == r[:-1]
        same_prev = np.concatenate([[False], same])
        same_next = np.concatenate([same, [False]])
        block = np.cumsum(~same_prev) - 1
        norm = (f[~same_next] - f[~same_prev])[block]
        gap = f[1:] - f[:-1]
        d_last = np.where(same_prev, np.concatenate([[0.0], gap]), np.inf)
        d_next = np.where(same_next, np.concatenate([gap, [0.0]]), np.inf)
        with np.errstate(invalid="ignore", divide="ignore"):
            cd[o] += np.where(norm > 0, (d_last + d_next) / np.where(norm > 0, norm, 1.0), 0.0)
    return cd / m


def rank_and_crowding(F: np.ndarray, CV: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Deb's constrained ranking: (rank, crowding distance) per row; lower rank, larger crowding win."""
    n = len(F)
    rank = np.zeros(n, dtype=np.int64)
    crowd = np.zeros(n)
    feas = np.flatnonzero(CV <= 0)
    n_fronts = 0
    if len(feas):
        fronts = _NDS.do(F[feas])
        for r, front in enumerate(fronts):
            rank[feas[front]] = r
        n_fronts = len(fronts)
        crowd[feas] = crowding_by_front(F[feas], rank[feas])
    infeas = np.flatnonzero(CV > 0)
    if len(infeas):
        rank[infeas[np.argsort(CV[infeas], kind="stable")]] = n_fronts + np.arange(len(infeas))
    return rank, crowd


class LinearSurrogate:
    """Ridge regression of top-1 on the one-hot arch (plus a constant), from running sums over every arch the
    evaluator stores: a cheap first guess at which offspring are worth evaluating (the screening of :class:`NSGA2`).
    ``memory``: weights ``exp(-age / memory)`` by position in the store (recent archs, near the front, count more).

    Without ``memory`` the sums are exact in float64 (0/1 products; top-1 values are float32 numbers of similar
    magnitude), so they do not depend on the BLAS kernel's summation order; the solve does, in its last bits.
    """

    def __init__(self, space, alpha: float = 1.0, memory: float | None = None) -> None:
        self.memory = float(memory) if memory else None
        self.offsets = space.one_hot_offsets
        self.size = space.one_hot_size  # position of the constant; one more, of a zero weight, for unused slots
        self.A = np.zeros((self.size + 1, self.size + 1))
        self.b = np.zeros(self.size + 1)
        self.alpha = float(alpha)
        self.n_seen = 0
        self.w: tuple[np.ndarray, float] | None = None  # the solved fit: flat weight table (see predict), constant
        self._n_choices = np.diff(np.append(self.offsets, self.size))
        self._width = int(self._n_choices.max()) + 1
        self._base = 1 + self._width * np.arange(len(self.offsets))

    def _positions(self, xn: np.ndarray) -> np.ndarray:
        """Where each normalised row's one-hot is 1 (unused slots point at the zero weight), and the constant."""
        pos = np.where(xn >= 0, self.offsets[None, :] + xn, self.size + 1)
        return np.concatenate([pos, np.full((len(xn), 1), self.size)], axis=1)

    def update(self, ev) -> None:
        """Add the archs ``ev`` stored since the last update."""
        if ev.n == self.n_seen:
            return
        pos = self._positions(ev.X[self.n_seen : ev.n].astype(np.int64))
        P = np.zeros((len(pos), self.size + 2))
        P[np.arange(len(pos))[:, None], pos] = 1.0
        P = P[:, : self.size + 1]
        m = len(P)
        if self.memory:  # weight exp(-age / memory) by position in the store, so a resumed search rebuilds the same fit
            keep = np.exp(-m / self.memory)
            self.A *= keep
            self.b *= keep
            Pw = P * np.exp(-np.arange(m - 1, -1, -1) / self.memory)[:, None]
            self.A += Pw.T @ P
            self.b += Pw.T @ ev.top1[self.n_seen : ev.n]
        else:
            self.A += P.T @ P
            self.b += P.T @ ev.top1[self.n_seen : ev.n]
        self.n_seen = ev.n
        self.w = None

    def predict(self, xn: np.ndarray) -> np.ndarray:
        """Estimated top-1 of normalised rows."""
        if self.w is None:
            w = np.linalg.solve(self.A + self.alpha * np.eye(len(self.b)), self.b)
            # flat: a 0, then per column its choices' weights and a trailing 0; choice j of column c sits at
            # base[c] + j, and an unused slot (-1) lands on the 0 before (one flat gather per row)
            flat = np.zeros(1 + len(self.offsets) * self._width)
            for c, (o, k) in enumerate(zip(self.offsets, self._n_choices)):
                flat[self._base[c] : self._base[c] + k] = w[o : o + k]
            self.w = (flat, float(w[self.size]))
        flat, const = self.w
        return np.take(flat, xn + self._base).sum(axis=1) + const


@register_algorithm
class NSGA2(SearchAlgorithm):
    """NSGA-II with arch-level operators.

    Args:
        pop_size: population (200 covers the accuracy-latency front better than 100).
        n_gen: generations after the initial population.
        crossover_prob: share of matings that cross over (others copy a parent before mutation).
        stage_prob: share of crossovers done over whole stages instead of blocks.
        mutation_prob: per-unit resampling probability.
        seed_extremes: put the smallest and largest arch (at the lowest/highest resolution) in the
            initial population, anchoring both ends of the front.
        refill_rounds: re-mutations tried for offspring that duplicate an evaluated arch.
        mating_window: 0: the second parent is a tournament winner; k > 0: one of the k population members next to
            the first parent on the last objective (latency), either side, so crossovers stay along the front.
        init: ``uniform`` (gene by gene) or ``ladder`` (from small to large archs, :func:`sample_ladder`).
        screen: 1: every child is evaluated; k > 1: breed k x pop_size children and evaluate the pop_size new ones
            that :class:`LinearSurrogate` rates best above the population's front (objectives top-1 and latency,
            constrained on latency at most: children over the limit come last; otherwise off).
        screen_alpha, screen_memory: the surrogate's ridge penalty and memory.
    """

    name = "nsga2"
    exact_resume = True

    def __init__(self, *, pop_size: int = 200, n_gen: int = 100, crossover_prob: float = 0.9,
                 stage_prob: float = 0.5, mutation_prob: float = 0.03, seed_extremes: bool = True,
                 refill_rounds: int = 3, mating_window: int = 0, init: str = "uniform",
                 screen: int = 1, screen_alpha: float = 1.0, screen_memory: float | None = None) -> None:
        super().__init__(n_gen=n_gen)
        if pop_size < 4:
            raise ValueError(f"pop_size must be >= 4, got {pop_size}")
        self.pop_size = int(pop_size)
        self.crossover_prob = float(crossover_prob)
        self.stage_prob = float(stage_prob)
        self.mutation_prob = float(mutation_prob)
        self.seed_extremes = bool(seed_extremes)
        self.refill_rounds = int(refill_rounds)
        if init not in ("uniform", "ladder"):
            raise ValueError(f"init must be 'uniform' or 'ladder', got {init!r}")
        for key, v in (("mating_window", mating_window), ("screen", screen)):
            if int(v) != v or v < (0 if key == "mating_window" else 1):
                raise ValueError(f"{key} must be an integer >= {0 if key == 'mating_window' else 1}, got {v!r}")
        if screen_alpha <= 0 or (screen_memory is not None and screen_memory <= 0):
            raise ValueError(f"screen_alpha and screen_memory must be > 0 (screen_memory null: no weighting), got "
                             f"{screen_alpha!r} and {screen_memory!r}")
        self.mating_window = int(mating_window)
        self.init = init
        self.screen = int(screen)
        self.screen_alpha = float(screen_alpha)
        self.screen_memory = screen_memory
        self._surrogate: LinearSurrogate | None = None
        #: genomes put first in the initial population (e.g. archs already measured); the rest is sampled
        self.initial_genomes: np.ndarray | None = None

    # ---------------------------------------------------------------------------------- pieces
    def _initial(self, ctx: SearchContext) -> np.ndarray:
        layout, n = ctx.layout, self.pop_size
        X = sample_genomes(layout, ctx.rng, n) if self.init == "uniform" else sample_ladder(layout, ctx.rng, n)
        space = ctx.problem.ev.space
        if hasattr(space, "with_pure_policies"):  # mixed precision: a third all-FP32, a third all-INT8
            X = space.with_pure_policies(X)
        if self.seed_extremes:
            X[0] = 0
            X[1] = layout.n_choices - 1
        if self.initial_genomes is not None and len(self.initial_genomes):
            X = np.concatenate([np.asarray(self.initial_genomes, dtype=np.int64), X])  # more than pop_size: survival picks
        return self._unique_new(ctx, X, known_ok=False)

    def _unique_new(self, ctx: SearchContext, X: np.ndarray, *, known_ok: bool = False) -> np.ndarray:
        """Drop rows that repeat an arch of the batch (or, unless ``known_ok``, an evaluated arch),
        re-mutating them up to ``refill_rounds`` times first."""
        keep = np.ones(len(X), dtype=bool)
        for attempt in range(self.refill_rounds + 1):
            keys = ctx.keys(X)
            known = np.zeros(len(X), dtype=bool) if known_ok else ctx.is_seen(keys)
            seen: set[bytes] = set()
            dup = np.zeros(len(X), dtype=bool)
            for i, k in enumerate(keys):
                if known[i] or k in seen:
                    dup[i] = True
                else:
                    seen.add(k)
            if not dup.any():
                break
            if attempt == self.refill_rounds:
                keep = ~dup
                break
            X = X.copy()
            X[dup] = mutate(X[dup], ctx.layout, ctx.rng, self.mutation_prob)
        return X[keep]

    def _tournament(self, rng: np.random.Generator, rank: np.ndarray, crowd: np.ndarray, n: int) -> np.ndarray:
        a = rng.integers(0, len(rank), size=n)
        b = rng.integers(0, len(rank), size=n)
        a_wins = (rank[a] < rank[b]) | ((rank[a] == rank[b]) & (crowd[a] >= crowd[b]))
        return np.where(a_wins, a, b)

    def _offspring(self, ctx: SearchContext, X: np.ndarray, rank: np.ndarray, crowd: np.ndarray,
                   ids: np.ndarray) -> np.ndarray:
        if self._surrogate is None:
            return self._unique_new(ctx, self._children(ctx, X, rank, crowd, ids, self.pop_size))
        # screening: of screen x pop_size candidates, the pop_size new archs the surrogate rates best above the front
        pool = self._children(ctx, X, rank, crowd, ids, self.pop_size * self.screen, sparse=True)
        ev = ctx.problem.ev
        xn = ev.space.normalize(pool)
        self._surrogate.update(ev)
        lat = ev.predict_latency(xn, ctx.problem.obj.device)
        gain = self._surrogate.predict(xn) - self._front_top1(ctx, ids, rank, lat)
        limit = ctx.problem.obj.constraints.get("latency_ms")
        if limit is not None:  # over the latency limit: last (known exactly, unlike top-1)
            gain[lat > limit] = -np.inf
        # rounded: last-bit differences of the least-squares solve (LAPACK kernels differ by CPU) cannot reorder them;
        # equal archs have equal gains, so the first of each comes first
        order = np.lexsort((np.arange(len(pool)), -np.round(gain, 9)))
        picked: dict[bytes, int] = {}  # arch -> pool row, best first
        for s in range(0, len(order), 2 * self.pop_size):  # best first, in chunks: most of the pool is never keyed
            chunk = order[s : s + 2 * self.pop_size]
            keys = ev.keys(xn[chunk])
            fresh = np.flatnonzero(~ctx.is_seen(keys))[::-1].tolist()
            # each fresh arch at its first place in the chunk (zip reversed: an earlier place overwrites a later one)
            first = dict(zip([keys[p] for p in fresh], fresh))
            new = sorted(p for k, p in first.items() if k not in picked)[: self.pop_size - len(picked)]
            picked.update((keys[p], int(chunk[p])) for p in new)
            if len(picked) == self.pop_size:
                break
        return pool[np.sort(np.array(list(picked.values()), dtype=np.int64))]

    @staticmethod
    def _front_top1(ctx: SearchContext, ids: np.ndarray, rank: np.ndarray, latency: np.ndarray) -> np.ndarray:
        """Best top-1 of the population's first front at or under each latency (0 below its fastest arch)."""
        F = ctx.F(ids[rank == 0])
        o = np.argsort(F[:, 1], kind="stable")
        best = np.maximum.accumulate(1.0 - F[o, 0])
        k = np.searchsorted(F[o, 1], latency, side="right") - 1
        return np.where(k >= 0, best[np.maximum(k, 0)], 0.0)

    def _children(self, ctx: SearchContext, X: np.ndarray, rank: np.ndarray, crowd: np.ndarray, ids: np.ndarray,
                  n: int, *, sparse: bool = False) -> np.ndarray:
        """``n`` children: tournament parents, each crossed (``crossover_prob``) with a second tournament winner or,
        with ``mating_window``, with a neighbour on the last objective, then mutated."""
        rng, n_pairs = ctx.rng, (n + 1) // 2
        ia = self._tournament(rng, rank, crowd, n_pairs)
        if self.mating_window > 0:
            order = np.argsort(ctx.F(ids)[:, -1], kind="stable")
            where = np.empty(len(order), dtype=np.int64)
            where[order] = np.arange(len(order))
            step = rng.integers(1, self.mating_window + 1, size=n_pairs) * np.where(rng.random(n_pairs) < 0.5, -1, 1)
            ib = order[np.clip(where[ia] + step, 0, len(order) - 1)]
        else:
            ib = self._tournament(rng, rank, crowd, n_pairs)
        pa, pb = X[ia], X[ib]
        ca, cb = crossover(pa, pb, ctx.layout, rng, self.stage_prob)
        cross = rng.random(n_pairs) < self.crossover_prob
        ca = np.where(cross[:, None], ca, pa)
        cb = np.where(cross[:, None], cb, pb)
        return mutate(np.concatenate([ca, cb])[:n], ctx.layout, rng, self.mutation_prob, sparse=sparse)

    def _survive(self, ctx: SearchContext, X: np.ndarray, ids: np.ndarray):
        rank, crowd = rank_and_crowding(ctx.F(ids), ctx.CV(ids))
        sel = np.lexsort((-crowd, rank))[: self.pop_size]
        return X[sel], ids[sel], rank[sel], crowd[sel]

    # ------------------------------------------------------------------------------------ loop
    def run(self, ctx: SearchContext) -> None:
        state = ctx.resume_state
        obj = ctx.problem.obj
        self._surrogate = None
        if self.screen > 1 and tuple(obj.names) == ("top1", "latency_ms") and set(obj.constraints) <= {"latency_ms"}:
            self._surrogate = LinearSurrogate(ctx.problem.ev.space, self.screen_alpha, self.screen_memory)
        elif self.screen > 1:
            log.info("nsga2: screening is for objectives [top1, latency_ms], constrained on latency_ms at most; this "
                     "search (%s%s) evaluates every child", list(obj.names),
                     f", {obj.describe_constraints()}" if obj.constraints else "")
        if state:
            X, ids, gen = np.asarray(state["X"]), np.asarray(state["ids"]), int(state["gen"])
            rank, crowd = np.asarray(state["rank"]), np.asarray(state["crowd"])
            self.restore_rng(ctx.rng, state["rng"])
        else:
            X = self._initial(ctx)
            ids = ctx.evaluate(X)
            X, ids, rank, crowd = self._survive(ctx, X, ids)
            gen = 0
            ctx.end_generation(0, self._state_fn(ctx, X, ids, rank, crowd, 0))
        while gen < self.n_gen:
            gen += 1
            off = self._offspring(ctx, X, rank, crowd, ids)
            if len(off):
                off_ids = ctx.evaluate(off)
                X, ids, rank, crowd = self._survive(ctx, np.concatenate([X, off]), np.concatenate([ids, off_ids]))
            ctx.end_generation(gen, self._state_fn(ctx, X, ids, rank, crowd, gen))

    def _state_fn(self, ctx: SearchContext, X: np.ndarray, ids: np.ndarray, rank: np.ndarray, crowd: np.ndarray,
                  gen: int):
        def state() -> dict:
            return {"X": X.copy(), "ids": ids.copy(), "rank": rank.copy(), "crowd": crowd.copy(), "gen": gen,
                    "rng": self.rng_state(ctx.rng)}

        return state
