"""Search spaces, elastic supernets, subnet extraction, counting and supernet training."""

from supernets.base import Supernet
from supernets.bn import recalibrate_bn
from supernets.profile import count_macs, count_params
from supernets.registry import create_supernet, is_supernet, list_supernets, register_supernet
from supernets.space import Arch, MobileNetV3Space, ResNetSpace, SearchSpace

# isort: off
# Families register their entry functions on import.
# (each family module is imported here once it exists)
from supernets import ofa_mbv3  # noqa: F401
from supernets import ofa_resnet  # noqa: F401
from supernets import timm_supernet  # noqa: F401
from supernets import vit  # noqa: F401
# isort: on

__all__ = [
    "Arch",
    "MobileNetV3Space",
    "ResNetSpace",
    "SearchSpace",
    "Supernet",
    "count_macs",
    "count_params",
    "create_supernet",
    "is_supernet",
    "list_supernets",
    "recalibrate_bn",
    "register_supernet",
]
