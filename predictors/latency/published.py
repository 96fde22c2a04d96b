"""OFA's published MobileNetV3 subnets with their measured device latencies (few-shot training data).

The subnets and latencies are those of :func:`supernets.published.published_mbv3_subnets` (OFA's model-zoo
summary, bundled in ``supernets/data``); this module maps OFA's device labels to the project's device names and
the subnets onto latency geometries.
"""

from __future__ import annotations

from predictors.latency.layer_cost import MeasuredNet
from predictors.latency.table import LatencyTableError
from supernets.measurable_mbv3 import MBv3Geometry
from supernets.published import PUBLISHED_RESOLUTIONS, published_mbv3_subnets

__all__ = ["PUBLISHED_SOURCE", "device_label", "load_published_nets", "published_geometries"]

#: Where the published subnets come from (cited in the few-shot devices' meta.yaml).
PUBLISHED_SOURCE = "supernets/data/ofa_specialized_summary.csv"
_WIDTHS = (1.0, 1.2)
#: OFA's device labels -> this project's device names.
_DEVICE_NAMES = {"LG-G8": "lg_g8", "pixel1": "pixel", "pixel2": "pixel2", "note8": "note8", "note10": "note10",
                 "s7edge": "s7edge"}


def published_geometries() -> dict[float, MBv3Geometry]:
    """OFA-MobileNetV3 w1.0 and w1.2 geometries over a space whose resolutions reach 260 (the published
    subnets use 140..260, beyond the supernets' default 128..224)."""
    from supernets.ofa_mbv3 import MobileNetV3Config
    from supernets.space import MobileNetV3Space

    space = MobileNetV3Space(resolutions=PUBLISHED_RESOLUTIONS)
    return {w: MBv3Geometry.from_config(space, MobileNetV3Config.ofa(w)) for w in _WIDTHS}


def device_label(ofa_label: str) -> str:
    return _DEVICE_NAMES.get(ofa_label, ofa_label.lower().replace("-", "_"))


def load_published_nets(device: str, geometries: dict[float, MBv3Geometry]) -> list[MeasuredNet]:
    """The published subnets of ``device`` (project name, e.g. ``pixel``) as :class:`MeasuredNet` s.

    Args:
        geometries: width multiplier -> geometry whose space has 4 slots a stage (any resolutions).
    """
    out = []
    for net in published_mbv3_subnets():
        if net["latency_ms"] is None or device_label(net["device"]) != device:
            continue
        g = geometries.get(net["width_mult"])
        if g is None:
            raise LatencyTableError(f"published subnet {net['name']} is OFA-MobileNetV3 w{net['width_mult']}; "
                                    f"geometries given for widths {sorted(geometries)}")
        a = net["arch"]
        arch = g.space.arch(r=a.r, d=a.d, ks=a.ks, e=a.e)  # onto the geometry's space (its resolutions)
        out.append(MeasuredNet(name=net["name"], geometry=g, arch=arch, latency_ms=float(net["latency_ms"])))
    return out
