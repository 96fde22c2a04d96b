"""Does a host latency table still describe this machine? A probe of a few whole subnets, and a refresh.

A host table (``configs/device/<name>.yaml`` with ``measured_here: true``, e.g. ``host_cpu``) is only true of the
machine it was timed on: another CPU model, ISA (AVX2 vs AVX-512/VNNI/AMX kernels in ONNX Runtime's MLAS), core
count or ORT version changes every latency, and not by one factor. Before a search or the pipeline serves such a
table, :func:`probe_host_table` compares

* the fingerprint the served latencies were measured under (the calibration's when the table was recalibrated
  here, else the table's) with this machine's (:data:`predictors.latency.measure.HOST_FIELDS`), and
* ``k`` whole subnets spread over the table's latency range, exported and timed now with the table's own
  measurement settings (fewer repeats), against the model's prediction.

The table is *stale* when the median measured/predicted ratio is off by more than ``tolerance``; *foreign*
when the fingerprint differs. :func:`recalibrate_here` refits the table's calibration on whole subnets timed on
this machine into another folder (the per-block table stays: it only has to rank blocks, the calibration sets
the scale); ``scripts/pipeline.py`` uses it, and a full rebuild is ``python scripts/build_latency_table.py
supernet=<name> device=host_cpu restart=true``. ``scripts/bench_host_refresh.py`` measures which suffices.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from predictors.latency.measure import MeasureSettings, environment_fingerprint, fingerprint_diff
from predictors.latency.table import LatencyTableError, atomic_write_text, load_meta
from supernets.paths import LATENCY_TABLES_DIR

__all__ = ["ProbeResult", "is_host_device", "measure_archs", "probe_host_table", "rebuild_command", "recalibrate_here",
           "refit_calibration", "served_fingerprint", "warn_if_stale"]

log = logging.getLogger(__name__)
_SETTING_KEYS = ("provider", "threads", "graph_opt", "warmup", "repeats", "sessions", "passes", "batch", "statistic")


def rebuild_command(supernet: str, device: str = "host_cpu") -> str:
    return f"python scripts/build_latency_table.py supernet={supernet} device={device} restart=true"


def is_host_device(device: str) -> bool:
    """Whether ``device``'s latencies are timed on the machine that serves them (``measured_here: true``)."""
    from predictors.latency.devices import device_config

    return bool(device_config(device).get("measured_here"))


def served_fingerprint(meta: dict[str, Any]) -> dict[str, Any]:
    """The fingerprint of the machine the served latencies come from: a recalibrated table's calibration was
    timed there (whole subnets set the scale), otherwise the block measurements were."""
    calib = meta.get("calibration") or {}
    return dict(calib.get("fingerprint") or meta.get("fingerprint") or {})


def table_settings(meta: dict[str, Any]) -> MeasureSettings:
    """The measurement settings a table was built with (what a probe or recalibration must time with)."""
    m = meta.get("measurement") or {}
    return MeasureSettings(**{k: v for k, v in m.items() if k in _SETTING_KEYS})


@dataclass(frozen=True)
class ProbeResult:
    """What a probe found (``ratios`` = measured / predicted, one per probed subnet)."""

    device: str
    supernet: str
    folder: Path
    fingerprint_diff: dict[str, tuple[Any, Any]]
    archs: tuple[str, ...]
    predicted_ms: tuple[float, ...]
    measured_ms: tuple[float, ...]
    tolerance: float
    seconds: float
    ratios: tuple[float, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ratios", tuple(m / p for m, p in zip(self.measured_ms, self.predicted_ms)))

    @property
    def median_ratio(self) -> float:
        return float(np.median(self.ratios))

    @property
    def stale(self) -> bool:
        """The timings no longer agree with the table (median ratio off by more than ``tolerance``)."""
        return abs(self.median_ratio - 1.0) > self.tolerance

    @property
    def foreign(self) -> bool:
        """The served latencies were measured on another machine or with another runtime/setting."""
        return bool(self.fingerprint_diff)

    @property
    def ok(self) -> bool:
        return not (self.stale or self.foreign)

    def summary(self) -> dict[str, Any]:
        """JSON/YAML-ready record of the probe."""
        return {"stale": self.stale, "foreign": self.foreign, "median_ratio": round(self.median_ratio, 4),
                "ratios": [round(r, 4) for r in self.ratios], "archs": list(self.archs),
                "tolerance": self.tolerance, "seconds": round(self.seconds, 2),
                "fingerprint_diff": {k: [str(a), str(b)] for k, (a, b) in self.fingerprint_diff.items()}}

    def message(self) -> str:
        ratios = ", ".join(f"{r:.2f}" for r in self.ratios)
        diff = "; ".join(f"{k}: {a!r} there, {b!r} here" for k, (a, b) in self.fingerprint_diff.items())
        where = f"host latency table {self.folder} (device {self.device}, supernet {self.supernet})"
        fix = (f"Rebuild it on this machine with: {rebuild_command(self.supernet, self.device)} (or let "
               f"scripts/pipeline.py recalibrate a copy)")
        probe = (f"{len(self.ratios)} whole subnets timed now run {ratios} x the predicted latency "
                 f"(median {self.median_ratio:.2f}, tolerance ±{100 * self.tolerance:.0f}%, {self.seconds:.1f} s)")
        if self.stale:
            return (f"{where} does not describe this machine: {probe}"
                    + (f"; it was measured elsewhere ({diff})" if diff else "") + f". {fix}")
        if self.foreign:
            return (f"{where} was measured on another machine or setting ({diff}): an example, not this machine's "
                    f"truth, although {probe}. {fix}")
        return f"{where} matches this machine: {probe}"


def _probe_archs(model: Any, k: int, seed: int) -> list[Any]:
    """``k`` archs spread over the model's latency range (quantiles of a random sample), so a probe sees small
    and large subnets alike."""
    sp = model.space
    rng = np.random.default_rng(seed)
    cand = sp.decode(sp.sample_encoded(rng, max(64, 8 * k)))
    pred = np.asarray(model.predict(cand))
    order = np.argsort(pred)
    q = np.linspace(0.1, 0.9, k) if k > 1 else np.array([0.5])
    return [cand[i] for i in order[np.round(q * (len(order) - 1)).astype(int)]]


def measure_archs(supernet_name: str, archs: list[Any], settings: MeasureSettings,
                  supernet: Any | None = None) -> list[dict[str, Any]]:
    """End-to-end ONNX Runtime timings of ``archs`` with ``settings`` (one record per arch, ``value_ms``)."""
    import supernets
    from predictors.latency.build import measure_subnets

    net = (supernets.create_supernet(supernet_name) if supernet is None else supernet).eval()
    with tempfile.TemporaryDirectory(prefix="latency_probe_") as tmp:
        return measure_subnets(net, archs, settings, Path(tmp), progress=False)


def probe_host_table(device: str, supernet: str, *, tables_dir: Path | str | None = None, k: int = 3,
                     tolerance: float = 0.10, seed: int = 12345, repeats: int = 20,
                     supernet_obj: Any | None = None, geometry: Any | None = None) -> ProbeResult:
    """Time ``k`` whole subnets now and compare with the served table (see the module docstring).

    Args:
        repeats: timed runs per subnet (one session, 5 warm-up runs; the table's statistic): seconds, not minutes.
        supernet_obj: a built supernet of that name to cut the subnets from (else one is created; its weights do
            not matter for latency).
        geometry: the measurable layers of ``supernet_obj`` when it is shaped otherwise than the registry's default
            (a checkpoint's ``supernet_kwargs``: the table's keys carry the shapes).
    """
    import predictors
    from predictors.latency.devices import device_config

    if k < 1 or not 0 < tolerance < 1:
        raise ValueError(f"probe needs k >= 1 subnets and 0 < tolerance < 1, got k={k}, tolerance={tolerance}")
    t0 = time.perf_counter()
    root = LATENCY_TABLES_DIR if tables_dir is None else Path(tables_dir)
    folder = root / device_config(device)["table_dir"] / supernet
    model = predictors.load_latency_model(device, supernet, tables_dir=root, geometry=geometry)
    meta = load_meta(folder)
    built = table_settings(meta)
    settings = MeasureSettings(**{**asdict(built), "sessions": 1, "warmup": min(built.warmup, 5),
                                  "repeats": min(built.repeats, repeats)})
    archs = _probe_archs(model, k, seed)
    pred = [float(p) for p in model.predict(archs)]
    meas = [float(m["value_ms"]) for m in measure_archs(supernet, archs, settings, supernet_obj)]
    return ProbeResult(device=device, supernet=supernet, folder=folder,
                       fingerprint_diff=fingerprint_diff(served_fingerprint(meta), environment_fingerprint(built)),
                       archs=tuple(str(a) for a in archs), predicted_ms=tuple(pred), measured_ms=tuple(meas),
                       tolerance=tolerance, seconds=time.perf_counter() - t0)


def warn_if_stale(device: str, supernet: str, *, tables_dir: Path | str | None = None, k: int = 3,
                  **kwargs: Any) -> ProbeResult | None:
    """Probe a host device's table before it is served; log a warning naming the rebuild command when it is
    stale or was measured elsewhere. Other devices (published, few-shot, learned) are not probed: ``None``."""
    if k <= 0 or not is_host_device(device):
        return None
    res = probe_host_table(device, supernet, tables_dir=tables_dir, k=k, **kwargs)
    (log.info if res.ok else log.warning)(res.message())
    return res


def refit_calibration(rows: list[dict[str, Any]], old: tuple[float, float, float]) -> dict[str, Any]:
    """New ``(a, b, c)`` from whole subnets timed here: the old calibration rescaled by the median
    measured/predicted ratio (one parameter), or ``a*sum + b*n_blocks + c`` refitted (three), whichever predicts
    the subnets better left out one at a time. With 5-10 subnets a free three-parameter fit extrapolates wildly
    (half or double the latency of a subnet outside their range); a scale cannot, and where enough subnets pin the
    three down they win."""
    from predictors.latency.models import fit_calibration

    y = np.array([r["measured_ms"] for r in rows])
    tsum = np.array([r["table_sum_ms"] for r in rows])
    nb = np.array([r["n_blocks"] for r in rows], dtype=np.float64)
    a0, b0, c0 = old
    base = a0 * tsum + b0 * nb + c0
    idx = np.arange(len(y))
    loo_scale = np.array([abs(np.median(y[idx != i] / base[idx != i]) * base[i] / y[i] - 1) for i in idx])
    loo_affine = np.full(len(y), np.inf)
    if len(y) >= 6:  # fewer leaves each three-parameter fit with at most 2 spare points
        for i in idx:
            a, b, c = fit_calibration(tsum[idx != i], nb[idx != i], y[idx != i])
            loo_affine[i] = abs((a * tsum[i] + b * nb[i] + c) / y[i] - 1)
    if loo_affine.mean() < loo_scale.mean():
        a, b, c = fit_calibration(tsum, nb, y)
        how = "latency = a*sum + b*n_blocks + c refitted (relative residuals, soft-L1 loss)"
    else:
        s = float(np.median(y / base))
        a, b, c = a0 * s, b0 * s, c0 * s
        how = f"the previous calibration scaled by the median measured/predicted ratio {s:.4f}"
    rel = np.abs((a * tsum + b * nb + c) / y - 1)
    return {"a": float(a), "b": float(b), "c": float(c), "n_subnets": len(y), "fit": how,
            "train_mape": float(rel.mean()), "loo_mape_scale": float(loo_scale.mean()),
            "loo_mape_affine": float(loo_affine.mean()) if np.isfinite(loo_affine).all() else None,
            "table_sum_ratio_median": float(np.median(y / tsum))}


def recalibrate_here(device: str, supernet: str, out_root: Path | str, *, tables_dir: Path | str | None = None,
                     k: int = 10, seed: int = 1, supernet_obj: Any | None = None,
                     command: str | None = None) -> dict[str, Any]:
    """Copy the table of ``device``/``supernet`` into ``out_root/<table_dir>/<supernet>`` and refit its
    calibration (``latency = a*sum + b*n_blocks + c``) on ``k`` random whole subnets timed on this machine with
    the table's measurement settings. The per-block entries are kept; ``meta.yaml`` records this machine's
    fingerprint under ``calibration`` and what was done under ``refreshed``. Returns that ``refreshed`` record."""
    import predictors
    from predictors.latency.calibration import calibration_csv
    from predictors.latency.devices import device_config

    if k < 3:
        raise ValueError(f"recalibration fits 3 coefficients: it needs k >= 3 whole subnets, got k={k}")
    t0 = time.perf_counter()
    table_dir = device_config(device)["table_dir"]
    src = (LATENCY_TABLES_DIR if tables_dir is None else Path(tables_dir)) / table_dir / supernet
    dst = Path(out_root) / table_dir / supernet
    if src.resolve() == dst.resolve():
        raise ValueError(f"recalibrate_here writes a copy: out_root {out_root} must differ from the table's root")
    meta = load_meta(src)
    if meta.get("model") != "table" or not (src / "table.csv").is_file():
        raise LatencyTableError(f"{src} is not a measured table (model {meta.get('model')!r}); only host tables "
                                f"(model: table, table.csv) can be recalibrated")
    model = predictors.load_latency_model(device, supernet, tables_dir=src.parent.parent)
    sp = model.space
    settings = table_settings(meta)
    archs = sp.decode(sp.sample_encoded(np.random.default_rng(seed), k))
    measured = measure_archs(supernet, archs, settings, supernet_obj)
    total, nb = model.block_sums(sp.encode(archs))
    rows = [{"arch": str(a), "resolution": a.r, "measured_ms": m["value_ms"], "std_ms": m["iqr_ms"] / 1.349,
             "table_sum_ms": float(t), "n_blocks": int(n), "passes": settings.passes}
            for a, m, t, n in zip(archs, measured, total, nb)]
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / "table.csv", dst / ".table.csv.tmp")
    (dst / ".table.csv.tmp").replace(dst / "table.csv")
    atomic_write_text(dst / "calibration.csv", calibration_csv(rows))
    env = environment_fingerprint(settings)
    refreshed = {"how": f"recalibrated on {k} whole subnets timed on this machine; per-block table kept",
                 "from": str(src), "table_fingerprint": meta.get("fingerprint"), "k": k, "seed": seed,
                 "seconds": round(time.perf_counter() - t0, 2), "command": command}
    meta["calibration"] = {**refit_calibration(rows, model.calibration), "fingerprint": env}
    meta["refreshed"] = refreshed
    meta["status"] = "complete"
    atomic_write_text(dst / "meta.yaml", yaml.safe_dump(meta, sort_keys=False))
    return refreshed
