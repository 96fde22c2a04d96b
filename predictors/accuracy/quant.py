"""Accuracy of quantized subnets, measured with ONNX Runtime, and predictors of it.

:class:`QuantEvaluator` measures one arch of a :class:`~supernets.quant_space.QuantSpace`: the base subnet is
extracted, its BatchNorm recalibrated on training batches (as every evaluation here does), exported to ONNX,
quantized by ONNX Runtime's static QDQ quantizer with calibration on ``calib_batches`` training batches (its FP32
groups' nodes excluded, :mod:`predictors.latency.quant`), and scored with ONNX Runtime on the held-out split. The
FP32 top-1 of the same base subnet is measured the same way (cached per base arch), so every row carries the drop.

:func:`build_quant_dataset` writes those rows (resumable CSV: ``arch, policy, top1, top1_fp32, bytes, bytes_fp32``).
Two ways to predict the quantized top-1 (:func:`compare_predictors` ranks them on held-out rows):

* ``direct``: any predictor recipe (``configs/predictor``) over the quant space's features, precision genes included;
* ``drop``: an FP32 predictor over the base space minus a learnt drop (:class:`QuantDropPredictor`).
"""

from __future__ import annotations

import csv
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from predictors.base import ArchModel
from predictors.fileio import atomic_path, atomic_write_text
from predictors.latency.export import export_onnx
from predictors.latency.quant import QuantSettings, ort_top1, quantize_onnx
from supernets.quant_space import INT8
from supernets.utils import resize_batch

__all__ = ["DATASET_COLUMNS", "QuantDropPredictor", "QuantEvaluator", "build_quant_dataset", "compare_predictors",
           "drop_predictor", "load_quant_dataset"]

DATASET_COLUMNS = ("arch", "policy", "top1", "top1_fp32", "bytes", "bytes_fp32")


class QuantEvaluator:
    """Measured top-1 (ONNX Runtime) of quantized subnets of ``qnet`` (a :class:`~supernets.quant.QuantSupernet`).

    Args:
        calib: training batches ``(x, y)``: BN recalibration and the quantizer's calibration.
        eval_batches: held-out labelled batches the top-1 is measured on.
        settings: the quantizer's method, per-channel weights, calibration samples.
    """

    def __init__(self, qnet: Any, calib: Sequence[tuple[Any, Any]], eval_batches: Sequence[tuple[Any, Any]], *,
                 settings: QuantSettings | None = None) -> None:
        self.qnet, self.calib, self.eval_batches = qnet, list(calib), list(eval_batches)
        self.settings = settings or QuantSettings()
        self._fp32: dict[str, tuple[float, int]] = {}

    def _static(self, base_arch: Any) -> Any:
        from supernets.bn import recalibrate_bn

        self.qnet.base.set_active_subnet(self.qnet.base_arch_of(base_arch))
        sub = self.qnet.base.get_active_subnet().eval()
        recalibrate_bn(sub, [x for x, _ in self.calib], n_batches=len(self.calib),
                       transform=lambda x: resize_batch(x, base_arch.r))
        return sub

    def evaluate(self, arch: Any, out_path: Path | str | None = None) -> dict[str, Any]:
        """``{"arch", "policy", "top1", "top1_fp32", "bytes", "bytes_fp32"}`` of one arch; ``out_path`` keeps its
        (quantized) ONNX file."""
        import torch

        sp = self.qnet.space
        base, bits = sp.split(arch)
        shape = (1, *self.qnet.latency_layers().input_shape(arch.r)[1:])
        with tempfile.TemporaryDirectory(prefix="quant_eval_") as tmp, torch.no_grad():
            sub = self._static(base)
            # one FP32 export per call: measured as the twin (once per base arch) and quantized (half the exports
            # of export_quant_subnet, which would export again)
            fp32 = Path(tmp) / "fp32.onnx"
            export_onnx(sub, shape, fp32, check=False)
            if str(base) not in self._fp32:
                self._fp32[str(base)] = (ort_top1(fp32, self.eval_batches, arch.r), fp32.stat().st_size)
            top1_fp32, bytes_fp32 = self._fp32[str(base)]
            path = Path(out_path) if out_path is not None else Path(tmp) / "q.onnx"
            int8 = [b == INT8 for b in bits]
            if any(int8):
                samples = [s[None] for x, _ in self.calib for s in resize_batch(x, arch.r).numpy()]
                quantize_onnx(fp32, path, samples, exclude_groups=[g for g, q in enumerate(int8) if not q],
                              n_groups=len(bits), settings=self.settings)
            elif path != fp32:
                with atomic_path(path, suffix=".onnx") as tmp_path:
                    shutil.copyfile(fp32, tmp_path)
            top1 = ort_top1(path, self.eval_batches, arch.r) if any(int8) else top1_fp32
            size = path.stat().st_size
        return {"arch": str(arch), "policy": sp.policy(arch), "top1": top1, "top1_fp32": top1_fp32, "bytes": size,
                "bytes_fp32": bytes_fp32}


def load_quant_dataset(path: Path | str) -> list[dict[str, Any]]:
    """Rows of a quantized-accuracy CSV (:data:`DATASET_COLUMNS`); [] if absent."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != DATASET_COLUMNS:
            raise ValueError(f"{path}: header {reader.fieldnames}, expected {list(DATASET_COLUMNS)}")
        out = []
        for line, row in enumerate(reader, start=2):
            try:
                out.append({"arch": row["arch"], "policy": row["policy"], "top1": float(row["top1"]),
                            "top1_fp32": float(row["top1_fp32"]), "bytes": int(row["bytes"]),
                            "bytes_fp32": int(row["bytes_fp32"])})
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{path} line {line}: malformed row {dict(row)} ({exc})") from None
    return out


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    lines = [",".join(DATASET_COLUMNS)] + [",".join(str(r[c]) for c in DATASET_COLUMNS) for r in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")


def build_quant_dataset(evaluator: QuantEvaluator, archs: Sequence[Any], out: Path | str, *,
                        progress: bool = False) -> list[dict[str, Any]]:
    """Measure ``archs`` into ``out`` (rewritten atomically after each row; a rerun measures only the missing).
    Rows are keyed by arch alone: keep one file per checkpoint, data and quantization settings."""
    from tqdm.auto import tqdm

    out = Path(out)
    rows = load_quant_dataset(out)
    done = {r["arch"] for r in rows}
    for arch in tqdm([a for a in archs if str(a) not in done], desc="quantized subnets", disable=not progress):
        rows.append(evaluator.evaluate(arch))
        _write(out, rows)
    by_arch = {r["arch"]: r for r in rows}
    return [by_arch[str(a)] for a in archs]


class QuantDropPredictor(ArchModel):
    """Quantized top-1 = an FP32 predictor over the base space - a drop model over the quant space's features
    (gradient-boosted trees, scikit-learn): the FP32 ranking learnt from FP32 rows, the precision genes' effect
    learnt as a difference."""

    target = "top1"

    def __init__(self, space: Any, fp32: dict[str, Any] | None = None, *, max_iter: int = 100) -> None:
        super().__init__(space)
        from predictors.accuracy.models import build_predictor

        self.fp32 = build_predictor(dict(fp32 or {"kind": "ridge"}), space.base)
        self.max_iter = int(max_iter)
        self.drop: Any = None

    def _features(self, encoded: np.ndarray) -> np.ndarray:
        from predictors.accuracy.features import onehot_stats_features

        return onehot_stats_features(self.space, encoded)

    def fit(self, archs: Sequence[Any], top1: np.ndarray, top1_fp32: np.ndarray) -> QuantDropPredictor:
        from sklearn.ensemble import HistGradientBoostingRegressor
        from threadpoolctl import threadpool_limits

        x = self.space.encode(archs)
        self.fp32.fit(self.space.base_encoded(x), np.asarray(top1_fp32))
        with threadpool_limits(1):  # OpenMP's spinning workers cost a shared 2-core host far more than they give
            self.drop = HistGradientBoostingRegressor(max_iter=self.max_iter, random_state=0).fit(
                self._features(x), np.asarray(top1_fp32) - np.asarray(top1))
        return self

    def _predict(self, encoded: np.ndarray) -> np.ndarray:
        if self.drop is None:
            raise RuntimeError("QuantDropPredictor is not fitted; call fit(archs, top1, top1_fp32)")
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, user_api="openmp"):  # as in fit: a search predicts a few hundred rows per call
            drop = self.drop.predict(self._features(encoded))
        return self.fp32.predict(self.space.base_encoded(encoded)) - drop


def drop_predictor(dataset: str | Path | None = None, *, space: Any = None, fp32: dict[str, Any] | None = None,
                   max_iter: int = 100, supernet: str | None = None, **_: Any) -> QuantDropPredictor:
    """A :class:`QuantDropPredictor` fitted on a quantized-accuracy CSV (:func:`build_quant_dataset`; the
    quantization table writes ``quant_accuracy.csv``) for ``space`` (a quant space): ``configs/predictor/
    quant_drop.yaml``, ``search.py quant=mixed predictor=quant_drop predictor.dataset=<csv>``. Fitting takes well
    under a second (a ridge and a hundred boosted trees over some tens of rows)."""
    if dataset is None:
        raise ValueError("predictor quant_drop needs predictor.dataset=<quant_accuracy.csv> (rows measured by "
                         "predictors.accuracy.quant.build_quant_dataset, e.g. the quantization table's)")
    if space is None or not hasattr(space, "q_slice"):
        raise ValueError(f"predictor quant_drop predicts archs of a quant space (search.py quant=mixed|int8|fp32); "
                         f"got space {getattr(space, 'name', space)!r}")
    rows = load_quant_dataset(dataset)
    if len(rows) < 4:
        raise ValueError(f"predictor quant_drop: {dataset} holds {len(rows)} rows; it needs at least 4")
    import dataclasses

    from supernets.quant_space import FP32, INT8

    # fitted over the mixed twin of ``space`` (the rows hold FP32, INT8 and mixed policies), served over ``space``
    mixed = dataclasses.replace(space, bits=(INT8, FP32))
    archs = [mixed.parse(r["arch"]) for r in rows]
    model = QuantDropPredictor(mixed, fp32, max_iter=max_iter).fit(
        archs, np.array([r["top1"] for r in rows]), np.array([r["top1_fp32"] for r in rows]))
    out = model if mixed == space else PinnedQuantModel(model, space)
    out.supernet = supernet
    out.trained_resolutions = sorted({a.r for a in archs})
    out.path = str(dataset)
    return out


class PinnedQuantModel(ArchModel):
    """A mixed-precision space's model served over a space of the same layout with fewer precisions (FP32-only,
    INT8-only): each precision gene's index is mapped to the mixed space's."""

    def __init__(self, model: ArchModel, space: Any) -> None:
        super().__init__(space, supernet=model.supernet)
        self.model = model
        self.target = model.target
        self._to_mixed = np.asarray([model.space.bits.index(b) for b in space.bits])

    def _predict(self, encoded: np.ndarray) -> np.ndarray:
        x = np.array(encoded, copy=True)
        x[:, self.space.q_slice] = self._to_mixed[x[:, self.space.q_slice]]
        return self.model.predict(x)


def compare_predictors(space: Any, rows: Sequence[dict[str, Any]], *, test_fraction: float = 0.3, seed: int = 0,
                       direct: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit the ``direct`` and ``drop`` predictors on a random split of ``rows`` and rank the held-out rows:
    ``{"direct": ranking metrics, "drop": ranking metrics, "n_train", "n_test"}`` (Kendall tau, Spearman, RMSE)."""
    from sklearn.model_selection import train_test_split
    from threadpoolctl import threadpool_limits

    from predictors.accuracy.metrics import ranking_metrics
    from predictors.accuracy.models import build_predictor

    archs = [space.parse(r["arch"]) for r in rows]
    y = np.array([r["top1"] for r in rows])
    y32 = np.array([r["top1_fp32"] for r in rows])
    tr, te = train_test_split(np.arange(len(rows)), test_size=test_fraction, random_state=seed)
    pick = lambda idx: [archs[i] for i in idx]  # noqa: E731
    with threadpool_limits(1):
        d = build_predictor(dict(direct or {"kind": "gbm", "max_iter": 100}), space).fit(pick(tr), y[tr])
        q = QuantDropPredictor(space).fit(pick(tr), y[tr], y32[tr])
    return {"direct": ranking_metrics(y[te], d.predict(pick(te))), "drop": ranking_metrics(y[te], q.predict(pick(te))),
            "n_train": len(tr), "n_test": len(te), "models": {"direct": d, "drop": q}}
