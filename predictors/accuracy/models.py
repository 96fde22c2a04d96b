"""Trainable accuracy predictors: an OFA-style MLP, a ridge regression, gradient-boosted trees and a bootstrap ensemble.

All predict in numpy (the MLP trains in torch, then its input standardisation and output scaling are folded
into the first and last layers so inference is plain matmuls over the feature matrix).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from predictors.accuracy.base import (
    KINDS,
    AccuracyPredictor,
    ArchBatch,
    create_predictor,
    is_predictor_kind,
    list_predictor_kinds,
    register_predictor,
)
from predictors.accuracy.features import get_features
from predictors.accuracy.numpy_mlp import NumpyMLP
from predictors.base import as_encoded
from supernets.space import SearchSpace

__all__ = ["EnsemblePredictor", "GBMPredictor", "MLPPredictor", "RidgePredictor", "build_predictor", "torch_threads"]


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Temporarily run torch on ``n`` threads. Small MLP steps gain nothing from more threads, and on a shared
    machine OpenMP's spinning workers made them ~10x slower (measured on this project's 2-core hosts)."""
    if not n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


class _FeaturePredictor(AccuracyPredictor):
    """Shared plumbing: a named feature set and per-column standardisation learnt in ``fit``."""

    def __init__(self, space: SearchSpace, *, supernet: str | None = None, features: str = "onehot") -> None:
        super().__init__(space, supernet=supernet)
        self.features = features
        self._featurize = get_features(features)

    def featurize(self, encoded: np.ndarray) -> np.ndarray:
        return self._featurize(self.space, encoded)

    def predict_features(self, features: np.ndarray) -> np.ndarray:
        """Predictions from an already built feature matrix (lets an ensemble build it once)."""
        raise NotImplementedError

    @staticmethod
    def _standardizer(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean = f.mean(0)
        std = f.std(0)
        # constant columns (e.g. a resolution never seen in training) keep scale 1 so they stay finite
        return mean, np.where(std > 1e-8, std, 1.0)


@register_predictor
class MLPPredictor(_FeaturePredictor):
    """OFA-style MLP (ReLU, hidden layers of equal width) on one-hot arch features; MSE on standardised top-1."""

    kind: ClassVar[str] = "mlp"

    def __init__(self, space: SearchSpace, *, supernet: str | None = None, features: str = "onehot",
                 hidden: tuple[int, ...] | list[int] = (256, 256), epochs: int = 300, lr: float = 1e-3,
                 weight_decay: float = 1e-4, batch_size: int = 128, seed: int = 0, threads: int | None = 1) -> None:
        super().__init__(space, supernet=supernet, features=features)
        self.hidden = [int(h) for h in hidden]
        self.epochs, self.lr, self.weight_decay = int(epochs), float(lr), float(weight_decay)
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.threads = threads
        self.mlp: NumpyMLP | None = None

    def params(self) -> dict[str, Any]:
        return {"features": self.features, "hidden": self.hidden, "epochs": self.epochs, "lr": self.lr,
                "weight_decay": self.weight_decay, "batch_size": self.batch_size, "seed": self.seed,
                "threads": self.threads}

    def _fit(self, encoded: np.ndarray, y: np.ndarray) -> None:
        f = self.featurize(encoded)
        x_mean, x_std = self._standardizer(f)
        y_mean, y_std = float(y.mean()), float(max(y.std(), 1e-6))
        xt = torch.from_numpy(((f - x_mean) / x_std).astype(np.float32))
        yt = torch.from_numpy(((y - y_mean) / y_std).astype(np.float32))
        rng = np.random.default_rng(self.seed)
        # fork_rng keeps the weight initialisation seeded without touching the global torch RNG
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            dims = [f.shape[1], *self.hidden, 1]
            layers: list[nn.Module] = []
            for i in range(len(dims) - 1):
                layers.append(nn.Linear(dims[i], dims[i + 1]))
                if i < len(dims) - 2:
                    layers.append(nn.ReLU())
            net = nn.Sequential(*layers)
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(self.epochs, 1))
        net.train()
        with torch_threads(self.threads):
            for _ in range(self.epochs):
                perm = torch.from_numpy(rng.permutation(xt.shape[0]))
                for s in range(0, xt.shape[0], self.batch_size):
                    idx = perm[s : s + self.batch_size]
                    loss = torch.mean((net(xt[idx]).squeeze(1) - yt[idx]) ** 2)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                sched.step()
        linears = [m for m in net if isinstance(m, nn.Linear)]
        ws = [m.weight.detach().numpy().T.astype(np.float64) for m in linears]
        bs = [m.bias.detach().numpy().astype(np.float64) for m in linears]
        # fold (f - mean) / std into layer 1 and y * y_std + y_mean into the last layer
        bs[0] = bs[0] - (x_mean / x_std) @ ws[0]
        ws[0] = ws[0] / x_std[:, None]
        ws[-1], bs[-1] = ws[-1] * y_std, bs[-1] * y_std + y_mean
        self.mlp = NumpyMLP(ws, bs)

    def _predict(self, encoded: np.ndarray) -> np.ndarray:
        return self.predict_features(self.featurize(encoded))

    def predict_features(self, features: np.ndarray) -> np.ndarray:
        if self.mlp is None:
            raise RuntimeError("MLPPredictor is not fitted; call fit(...) or load a saved artefact")
        return self.mlp(features)[:, 0]

    def state(self) -> dict[str, np.ndarray]:
        if self.mlp is None:
            raise RuntimeError("cannot save an unfitted MLPPredictor")
        out = {}
        for i, (w, b) in enumerate(zip(self.mlp.weights, self.mlp.biases)):
            out[f"w{i}"], out[f"b{i}"] = w, b
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        n = len(self.hidden) + 1
        missing = [k for i in range(n) for k in (f"w{i}", f"b{i}") if k not in state]
        if missing:
            raise ValueError(f"MLP weights lack {missing} (hidden={self.hidden})")
        self.mlp = NumpyMLP([state[f"w{i}"] for i in range(n)], [state[f"b{i}"] for i in range(n)])


@register_predictor
class RidgePredictor(_FeaturePredictor):
    """``sklearn.linear_model.Ridge`` on standardised features; a strong, fast baseline on one-hot codes."""

    kind: ClassVar[str] = "ridge"

    def __init__(self, space: SearchSpace, *, supernet: str | None = None, features: str = "onehot_stats",
                 alpha: float = 1.0) -> None:
        super().__init__(space, supernet=supernet, features=features)
        self.alpha = float(alpha)
        self.coef: np.ndarray | None = None
        self.intercept = 0.0

    def params(self) -> dict[str, Any]:
        return {"features": self.features, "alpha": self.alpha}

    def _fit(self, encoded: np.ndarray, y: np.ndarray) -> None:
        from sklearn.linear_model import Ridge

        f = self.featurize(encoded).astype(np.float64)
        mean, std = self._standardizer(f)
        model = Ridge(alpha=self.alpha).fit((f - mean) / std, y)
        self.coef = (model.coef_ / std).astype(np.float64)
        self.intercept = float(model.intercept_ - (mean / std) @ model.coef_)

    def _predict(self, encoded: np.ndarray) -> np.ndarray:
        return self.predict_features(self.featurize(encoded))

    def predict_features(self, features: np.ndarray) -> np.ndarray:
        if self.coef is None:
            raise RuntimeError("RidgePredictor is not fitted; call fit(...) or load a saved artefact")
        return features @ self.coef + self.intercept

    def state(self) -> dict[str, np.ndarray]:
        if self.coef is None:
            raise RuntimeError("cannot save an unfitted RidgePredictor")
        return {"coef": self.coef, "intercept": np.array([self.intercept])}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        missing = [k for k in ("coef", "intercept") if k not in state]
        if missing:
            raise ValueError(f"ridge weights lack {missing} (expected 'coef' and a one-element 'intercept')")
        self.coef, self.intercept = state["coef"].astype(np.float64), float(state["intercept"].reshape(-1)[0])


@register_predictor
class GBMPredictor(_FeaturePredictor):
    """scikit-learn's ``HistGradientBoostingRegressor`` on arch features; inference walks the fitted trees in numpy.

    The trees are kept as flat arrays (feature, threshold, children, leaf value per node, plus each tree's root),
    so a saved artefact is plain tensors (loaded with ``weights_only=True``) and prediction is a vectorised walk over
    all rows and trees at once, in float64 (no dependence on scikit-learn's version at load time).
    """

    kind: ClassVar[str] = "gbm"

    def __init__(self, space: SearchSpace, *, supernet: str | None = None, features: str = "onehot_stats",
                 max_iter: int = 300, learning_rate: float = 0.05, max_leaf_nodes: int = 15,
                 min_samples_leaf: int = 5, l2_regularization: float = 0.0, seed: int = 0) -> None:
        super().__init__(space, supernet=supernet, features=features)
        self.max_iter, self.learning_rate = int(max_iter), float(learning_rate)
        self.max_leaf_nodes, self.min_samples_leaf = int(max_leaf_nodes), int(min_samples_leaf)
        self.l2_regularization, self.seed = float(l2_regularization), int(seed)
        self.trees: dict[str, np.ndarray] | None = None

    def params(self) -> dict[str, Any]:
        return {"features": self.features, "max_iter": self.max_iter, "learning_rate": self.learning_rate,
                "max_leaf_nodes": self.max_leaf_nodes, "min_samples_leaf": self.min_samples_leaf,
                "l2_regularization": self.l2_regularization, "seed": self.seed}

    def _fit(self, encoded: np.ndarray, y: np.ndarray) -> None:
        from sklearn.ensemble import HistGradientBoostingRegressor
        from threadpoolctl import threadpool_limits

        f = self.featurize(encoded).astype(np.float64)
        model = HistGradientBoostingRegressor(
            max_iter=self.max_iter, learning_rate=self.learning_rate, max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=min(self.min_samples_leaf, max(1, len(y) // 4)), l2_regularization=self.l2_regularization,
            early_stopping=False, random_state=self.seed)
        # one OpenMP thread: a few hundred rows gain nothing from more, and on a shared 2-core host OpenMP's spinning
        # workers made a 50-tree fit take 78 s instead of well under one
        with threadpool_limits(limits=1, user_api="openmp"):
            model.fit(f, y)
        nodes = [tree.nodes for trees in model._predictors for tree in trees]  # one tree per iteration (regression)
        roots = np.cumsum([0] + [len(n) for n in nodes[:-1]]).astype(np.int64)
        allnodes = np.concatenate(nodes)
        offset = np.repeat(roots, [len(n) for n in nodes])
        self.trees = {
            "feature": allnodes["feature_idx"].astype(np.int64),
            "threshold": allnodes["num_threshold"].astype(np.float64),
            "left": allnodes["left"].astype(np.int64) + offset,
            "right": allnodes["right"].astype(np.int64) + offset,
            "leaf": allnodes["is_leaf"].astype(bool),
            "value": allnodes["value"].astype(np.float64),
            "roots": roots,
            "baseline": np.asarray(model._baseline_prediction, dtype=np.float64).reshape(-1)[:1],
            "n_features": np.array([f.shape[1]]),
        }

    def _predict(self, encoded: np.ndarray) -> np.ndarray:
        return self.predict_features(self.featurize(encoded))

    def predict_features(self, features: np.ndarray) -> np.ndarray:
        t = self.trees
        if t is None:
            raise RuntimeError("GBMPredictor is not fitted; call fit(...) or load a saved artefact")
        x = np.asarray(features, dtype=np.float64)
        if x.shape[1] != int(t["n_features"][0]):
            raise ValueError(f"GBM predictor was fitted on {int(t['n_features'][0])} features, got {x.shape[1]}")
        node = np.broadcast_to(t["roots"][None, :], (len(x), len(t["roots"]))).copy()
        rows = np.arange(len(x))[:, None]
        while True:
            inner = ~t["leaf"][node]
            if not inner.any():
                break
            go_left = x[rows, t["feature"][node]] <= t["threshold"][node]  # features are never NaN here
            node = np.where(inner, np.where(go_left, t["left"][node], t["right"][node]), node)
        return t["value"][node].sum(axis=1) + t["baseline"][0]

    def state(self) -> dict[str, np.ndarray]:
        if self.trees is None:
            raise RuntimeError("cannot save an unfitted GBMPredictor")
        return {k: np.asarray(v) for k, v in self.trees.items()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        need = ("feature", "threshold", "left", "right", "leaf", "value", "roots", "baseline", "n_features")
        missing = [k for k in need if k not in state]
        if missing:
            raise ValueError(f"gbm weights lack {missing} (expected {list(need)})")
        self.trees = {k: np.asarray(state[k]) for k in need}
        self.trees["leaf"] = self.trees["leaf"].astype(bool)


@register_predictor
class EnsemblePredictor(AccuracyPredictor):
    """``n`` members of one kind, each fitted on a bootstrap resample with its own seed.

    ``predict`` is the members' mean; ``predict_with_uncertainty`` adds their standard deviation, which grows
    where the members extrapolate differently (archs unlike the training set).
    """

    kind: ClassVar[str] = "ensemble"

    def __init__(self, space: SearchSpace, *, supernet: str | None = None, member: dict[str, Any] | None = None,
                 n: int = 5, bootstrap: bool = True, seed: int = 0) -> None:
        super().__init__(space, supernet=supernet)
        self.member = dict(member or {"kind": "mlp"})
        if not is_predictor_kind(self.member.get("kind")) or not KINDS[self.member["kind"]].trainable:
            raise ValueError(f"ensemble member kind {self.member.get('kind')!r} is not a trainable kind "
                             f"({list_predictor_kinds(trainable=True)})")
        if n < 2:
            raise ValueError(f"an ensemble needs n >= 2 members to estimate a spread, got {n}")
        self.n, self.bootstrap, self.seed = int(n), bool(bootstrap), int(seed)
        self.members: list[AccuracyPredictor] = [self._make_member(i) for i in range(self.n)]

    def _make_member(self, i: int) -> AccuracyPredictor:
        spec = {k: v for k, v in self.member.items() if k != "kind"}
        if "seed" in inspect.signature(KINDS[self.member["kind"]]).parameters:
            spec["seed"] = self.seed * 1000 + i
        return create_predictor(self.member["kind"], self.space, supernet=self.supernet, **spec)

    def params(self) -> dict[str, Any]:
        return {"member": self.member, "n": self.n, "bootstrap": self.bootstrap, "seed": self.seed}

    def _fit(self, encoded: np.ndarray, y: np.ndarray) -> None:
        rng = np.random.default_rng(self.seed)
        for m in self.members:
            idx = rng.integers(0, len(y), len(y)) if self.bootstrap else np.arange(len(y))
            m._fit(encoded[idx], y[idx])

    def _member_predictions(self, encoded: np.ndarray) -> np.ndarray:
        first = self.members[0]
        if isinstance(first, _FeaturePredictor) and all(
                isinstance(m, _FeaturePredictor) and m.features == first.features for m in self.members):
            f = first.featurize(encoded)  # members share the feature set: build it once
            return np.stack([m.predict_features(f) for m in self.members], axis=0)  # type: ignore[union-attr]
        return np.stack([m._predict(encoded) for m in self.members], axis=0)

    def _predict(self, encoded: np.ndarray) -> np.ndarray:
        return self._member_predictions(encoded).mean(0)

    def predict_with_uncertainty(self, archs: ArchBatch) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)`` over members, both float64 vectors of top-1 fractions."""
        x = as_encoded(self.space, archs)
        if x.shape[0] == 0:
            return np.zeros(0), np.zeros(0)
        p = self._member_predictions(x).astype(np.float64)
        return p.mean(0), p.std(0, ddof=1)

    def state(self) -> dict[str, np.ndarray]:
        return {f"m{i}.{k}": v for i, m in enumerate(self.members) for k, v in m.state().items()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        for i, m in enumerate(self.members):
            prefix = f"m{i}."
            sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if not sub:
                raise ValueError(f"ensemble weights lack member {i} (expected {self.n} members)")
            m.load_state(sub)


def build_predictor(spec: dict[str, Any], space: SearchSpace, *, supernet: str | None = None) -> AccuracyPredictor:
    """An unfitted predictor from a recipe ``{"kind": "mlp", <hyper-parameters>}`` (configs/predictor/*.yaml):
    :func:`create_predictor` on a trainable kind, the recipe's config keys left out."""
    spec = dict(spec)
    kind = spec.pop("kind", None)
    for key in ("name", "description", "artefact", "dataset", "_target_", "_partial_"):  # config keys, not hyper-parameters
        spec.pop(key, None)
    if is_predictor_kind(kind) and not KINDS[kind].trainable:
        raise ValueError(f"predictor kind {kind!r} is a published, fixed predictor; it cannot be trained; "
                         f"trainable kinds: {list_predictor_kinds(trainable=True)}")
    return create_predictor(kind, space, supernet=supernet, **spec)
