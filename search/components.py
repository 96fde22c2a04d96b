"""Build what a search needs from its config: the supernet (or a checkpoint), the accuracy predictor,
one latency model per device and the algorithm. Every failure names what was given, what was
expected and what to do."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from predictors.base import ArchModel
from search.subspace import adapt
from supernets.space import SearchSpace

__all__ = ["Components", "build_algorithm", "device_list", "load_components", "supernet_spec"]

log = logging.getLogger(__name__)

ALGORITHMS = ("nsga2", "random", "ofa_evolution", "optuna", "pymoo_nsga2", "nsga3", "smsemoa", "agemoea", "linas")


@dataclass
class Components:
    supernet_name: str
    space: SearchSpace
    accuracy: ArchModel
    latency: dict[str, ArchModel]
    supernet: Any | None = None  # a Supernet (for MACs/params and export); None when injected models suffice
    ckpt_meta: dict[str, Any] | None = None

    def macs_params(self):
        fn = getattr(self.supernet, "macs_params", None)
        return fn


def device_list(device: Any) -> list[str]:
    """``device=pixel`` or ``device=[pixel,note10]`` -> list of names (order kept, repeats dropped)."""
    if device is None:
        raise ValueError("no device given: pass device=<name> or device=[a,b,...] (see configs/device/)")
    names = [device] if isinstance(device, str) else list(device)
    if not names or not all(isinstance(d, str) and d for d in names):
        raise ValueError(f"device must be a name or a list of names, got {device!r}")
    return list(dict.fromkeys(names))


def supernet_spec(supernet: Any) -> tuple[str, dict[str, Any]]:
    """``ofa_mbv3_w12`` or ``{name: ..., **kwargs}`` (configs/supernet/<name>.yaml) -> (name, kwargs)."""
    if isinstance(supernet, str):
        return supernet, {}
    if isinstance(supernet, Mapping) and "name" in supernet:
        kw = {k: v for k, v in supernet.items() if k not in ("name", "_target_", "description")}
        if "resolutions" in kw and kw["resolutions"] is not None:
            kw["resolutions"] = [int(r) for r in kw["resolutions"]]
        return str(supernet["name"]), kw
    raise ValueError(f"supernet must be a registered name or a mapping with 'name', got {supernet!r}")


def _predictor_name(predictor: Any) -> str:
    if isinstance(predictor, str):
        return predictor
    if isinstance(predictor, Mapping):
        for key in ("name_or_path", "path", "name"):
            if predictor.get(key):
                return str(predictor[key])
    raise ValueError(f"predictor must be a name (configs/predictor/) or an artefact path, got {predictor!r}")


def load_components(cfg: Mapping[str, Any], *, accuracy: ArchModel | None = None,
                    latency: Mapping[str, ArchModel] | None = None, supernet: Any | None = None,
                    need_latency: bool = True) -> Components:
    """Resolve the supernet, predictor and latency models of ``cfg`` (injected objects take precedence).
    With ``need_latency=False`` (objectives and constraints without latency) no latency model is loaded."""
    import supernets
    from supernets.registry import list_supernets

    devices = device_list(cfg.get("device"))
    injected = supernet is not None
    ckpt_meta = None
    if supernet is None and cfg.get("ckpt"):
        from supernets.training.checkpoint import load_supernet

        supernet, ckpt_meta = load_supernet(str(cfg["ckpt"]), map_location="cpu")
        name = str(ckpt_meta.get("supernet", getattr(supernet, "name", "")))
        cfg_name, _ = supernet_spec(cfg.get("supernet", name))
        if cfg_name != name:
            log.info("ckpt=%s holds supernet %r; searching it (config named %r)", cfg["ckpt"], name, cfg_name)
    elif supernet is None:
        name, kwargs = supernet_spec(cfg.get("supernet", "ofa_mbv3_w12"))
        if not supernets.is_supernet(name):
            raise ValueError(f"unknown supernet {name!r}; registered supernets: {list_supernets()}")
        unset = [k for k in ("num_classes", "in_chans") if k in kwargs and kwargs[k] is None]
        if unset:  # null in configs/supernet/<name>.yaml: "from the training data", which a search has not
            raise ValueError(f"supernet={name} takes {' and '.join(unset)} from its training data (null in "
                             f"configs/supernet/{name}.yaml): pass ckpt=<a checkpoint of train.py> to search the "
                             f"trained supernet, or set " + " ".join(f"supernet.{k}=<n>" for k in unset))
        supernet = supernets.create_supernet(name, **kwargs)
    name = getattr(supernet, "name", None) or supernet_spec(cfg.get("supernet"))[0]
    space = supernet.space

    if accuracy is None:
        import predictors

        load_predictor = getattr(predictors, "load_predictor", None)
        if load_predictor is None:
            from predictors.accuracy.loading import load_predictor
        accuracy = load_predictor(_predictor_name(cfg.get("predictor", "ofa_pretrained")), supernet=name, space=space)
    elif accuracy.supernet not in (None, name):
        raise ValueError(f"the accuracy predictor was built for supernet {accuracy.supernet!r}, not {name!r}")

    supernet, space = _keep_to_trained_resolutions(cfg, accuracy, supernet, space, from_config=ckpt_meta is None and not injected)
    models: dict[str, ArchModel] = {}
    for d in devices if need_latency else ():
        if latency is not None and d in latency:
            models[d] = latency[d]
            continue
        from predictors import load_latency_model
        from predictors.latency.probe import warn_if_stale

        tables_dir = cfg.get("latency_tables_dir") or None
        models[d] = load_latency_model(d, name, tables_dir=tables_dir)
        # a host table is only true of the machine it was timed on: check it before serving it (seconds)
        warn_if_stale(d, name, tables_dir=tables_dir, k=int(cfg.get("latency_probe", 3) or 0))
    # models built for the family's full space also serve a supernet configured with fewer choices
    accuracy = adapt(accuracy, space)
    models = {d: adapt(m, space) for d, m in models.items()}
    return Components(supernet_name=name, space=space, accuracy=accuracy, latency=models, supernet=supernet,
                      ckpt_meta=ckpt_meta)


def _keep_to_trained_resolutions(cfg: Mapping[str, Any], accuracy: ArchModel, supernet: Any, space: SearchSpace,
                                 *, from_config: bool) -> tuple[Any, SearchSpace]:
    """Search only the resolutions the predictor was trained on (``restrict_resolutions: true``, the default):
    elsewhere it extrapolates, and a front of extrapolations is worthless. Rebuilds a supernet built from the
    config with those resolutions; a checkpoint's supernet keeps its own space."""
    trained = getattr(accuracy, "trained_resolutions", None)
    if not trained or not cfg.get("restrict_resolutions", True) or "r" not in space.group_names:
        return supernet, space
    have = space.columns[space.group_slices["r"].start].choices
    keep = [r for r in have if r in set(trained)]
    if len(keep) == len(have):
        return supernet, space
    if not keep:
        raise ValueError(f"the predictor was trained at resolutions {list(trained)}, none of which the supernet's "
                         f"space has ({list(have)}); pick a predictor for these resolutions or set "
                         "restrict_resolutions=false to search on its extrapolations")
    if not from_config:
        log.warning("predictor trained at resolutions %s only; the checkpoint's space also has %s",
                    list(trained), [r for r in have if r not in keep])
        return supernet, space
    import supernets

    name, kwargs = supernet_spec(cfg.get("supernet", getattr(supernet, "name", "ofa_mbv3_w12")))
    print(f"searching resolutions {keep[0]}..{keep[-1]} ({len(keep)} of {len(have)}): the predictor was trained on "
          f"those only (restrict_resolutions=false searches all)")
    supernet = supernets.create_supernet(name, **{**kwargs, "resolutions": keep})
    return supernet, supernet.space


def build_algorithm(acfg: Mapping[str, Any] | str):
    """An algorithm from ``configs/algorithm/<name>.yaml`` (``name:`` plus its arguments)."""
    from search.algorithms import NSGA2, OFAEvolution, OptunaSearch, PymooAlgorithm, RandomSearch

    if isinstance(acfg, str):
        acfg = {"name": acfg}
    kw = {k: v for k, v in dict(acfg).items() if k not in ("name", "description")}
    if "_target_" in kw:  # configs/algorithm/<name>.yaml built by Hydra (e.g. linas)
        from hydra.errors import InstantiationException
        from hydra.utils import instantiate

        try:
            return instantiate(kw, _convert_="all")
        except InstantiationException as e:
            raise ValueError(f"algorithm {acfg.get('name', kw['_target_'])!r}: {e}; see configs/algorithm/") from None
    name = acfg.get("name", "nsga2")
    classes = {"nsga2": NSGA2, "random": RandomSearch, "ofa_evolution": OFAEvolution, "optuna": OptunaSearch}
    try:
        if name in classes:
            return classes[name](**kw)
        if name in ("pymoo_nsga2", "nsga3", "smsemoa", "agemoea"):
            return PymooAlgorithm(kind=name, **kw)
    except TypeError as e:
        raise ValueError(f"algorithm {name!r}: bad option ({e}); see configs/algorithm/{name}.yaml") from None
    raise ValueError(f"unknown algorithm {name!r}; choose one of {list(ALGORITHMS)}")

