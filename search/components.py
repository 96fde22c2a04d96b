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

__all__ = ["Components", "build_algorithm", "build_devices", "device_list", "device_specs", "load_components",
           "predictor_name", "supernet_spec"]

log = logging.getLogger(__name__)

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


def device_specs(device: Any) -> dict[str, Mapping[str, Any] | None]:
    """The devices a search config selects, in order: ``{name: its composed config}`` as Hydra composes the
    ``device`` group (``device=[pixel,note10]`` puts each option under its own name), or ``{name: None}`` for
    names given by hand (``device="pixel"``, ``device=["pixel", "note10"]``; repeats dropped)."""
    if device is None:
        raise ValueError("no device given: pass device=<name> or device=[a,b,...] (see configs/device/)")
    if isinstance(device, Mapping):
        specs: dict[str, Mapping[str, Any] | None] = {}
        flat = {k: v for k, v in device.items() if not isinstance(v, Mapping)}
        if flat:  # a device config without a package header (as stage=import writes one) lands unnested
            if not isinstance(flat.get("name"), str):
                raise ValueError(f"device config {flat!r} has no 'name:'")
            specs[flat["name"]] = flat
        specs.update({str(k): v for k, v in device.items() if isinstance(v, Mapping)})
        if not specs:
            raise ValueError("no device given: pass device=<name> or device=[a,b,...] (see configs/device/)")
        return specs
    names = [device] if isinstance(device, str) else list(device)
    if not names or not all(isinstance(d, str) and d for d in names):
        raise ValueError(f"device must be a name or a list of names, got {device!r}")
    return dict.fromkeys(names)


def device_list(device: Any) -> list[str]:
    """``device=pixel`` or ``device=[pixel,note10]`` -> list of names (order kept, repeats dropped)."""
    return list(device_specs(device))


def build_devices(device: Any) -> dict[str, Any]:
    """``{name: Device}`` of :func:`device_specs` (configs instantiated; a bare name composed by Hydra), ``None``
    for a name no config knows (a latency model injected under it; :func:`load_components` says if not)."""
    from predictors.latency.devices import as_device, list_devices, resolve_device

    specs = device_specs(device)
    known = set(list_devices()) if any(v is None for v in specs.values()) else set()
    return {n: as_device(v) if v is not None else resolve_device(n) if n in known else None
            for n, v in specs.items()}


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


def predictor_name(predictor: Any) -> str:
    """The configured predictor's name (a composed config's ``name``) or artefact path."""
    if isinstance(predictor, str):
        return predictor
    if isinstance(predictor, Mapping):
        for key in ("name_or_path", "path", "name"):
            if predictor.get(key):
                return str(predictor[key])
    raise ValueError(f"predictor must be a name (configs/predictor/) or an artefact path, got {predictor!r}")


def load_components(cfg: Mapping[str, Any], *, accuracy: ArchModel | None = None,
                    latency: Mapping[str, ArchModel] | None = None, supernet: Any | None = None,
                    need_latency: bool = True, devices: Mapping[str, Any] | None = None) -> Components:
    """Resolve the supernet, predictor and latency models of ``cfg`` (injected objects take precedence).
    With ``need_latency=False`` (objectives and constraints without latency) no latency model is loaded.
    ``devices``: :func:`build_devices` of ``cfg.device`` when the caller built them already."""
    import supernets
    from supernets.registry import list_supernets

    devices = build_devices(cfg.get("device")) if devices is None else devices
    injected = supernet is not None
    ckpt_meta = None
    if supernet is None and cfg.get("ckpt"):
        from supernets.checkpoints import load_supernet

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
    if cfg.get("quant") and not injected:  # precision genes: the trained supernet searched with INT8/FP32 groups
        from supernets.quant import quant_supernet

        res = cfg.get("quant_resolutions")
        supernet = quant_supernet(supernet, str(cfg["quant"]), resolutions=[int(r) for r in res] if res else None)
    space = supernet.space

    if accuracy is None:
        from predictors import load_predictor

        pred = cfg.get("predictor", "ofa_pretrained")
        # a composed configs/predictor option is built from its _target_; a name or path is looked up
        accuracy = load_predictor(pred if isinstance(pred, Mapping) and "_target_" in pred else predictor_name(pred),
                                  supernet=name, space=space)
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
        from supernets.measurable import measurable_for

        dev = devices[d] if devices.get(d) is not None else d  # a name no config knows: its error names them all
        tables_dir = cfg.get("latency_tables_dir") or None
        if hasattr(supernet, "precision"):  # a quant space: its table's layers carry their precision
            models[d] = load_latency_model(dev, name, tables_dir=tables_dir, geometry=supernet.latency_layers())
            continue  # (the staleness probe below times FP32 subnets of the registered supernet only)
        # a checkpoint's supernet shaped by its own kwargs (e.g. a timm model with 10 classes at 32 px): the table's
        # keys carry the layers' shapes, so the layers are the checkpoint supernet's, not the registry default's
        shaped = {"geometry": measurable_for(supernet)} if (ckpt_meta or {}).get("supernet_kwargs") else {}
        models[d] = load_latency_model(dev, name, tables_dir=tables_dir, **shaped)
        # a host table is only true of the machine it was timed on: check it before serving it (seconds)
        warn_if_stale(dev, name, tables_dir=tables_dir, k=int(cfg.get("latency_probe", 3) or 0),
                      **({**shaped, "supernet_obj": supernet} if shaped else {}))
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
    """An algorithm from its config: ``configs/algorithm/<name>.yaml`` as Hydra composed it (``_target_`` plus its
    arguments; ``name`` labels it), or a registered name with arguments (``"random"``, ``{"name": "random",
    "n_gen": 5}``; :mod:`search.algorithms.registry`)."""
    from search.algorithms.registry import create_algorithm

    if isinstance(acfg, str):
        acfg = {"name": acfg}
    kw = {k: v for k, v in dict(acfg).items() if k not in ("name", "description")}
    name = acfg.get("name", kw.get("_target_", "nsga2"))
    if "_target_" not in kw:
        return create_algorithm(str(name), **kw)
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(kw, _convert_="all")
    except InstantiationException as e:
        raise ValueError(f"algorithm {name!r}: bad option ({e.__cause__ or e}); see configs/algorithm/{name}.yaml") \
            from None
