"""Published pretrained weights loaded into oncenas supernets (``create_supernet(name, pretrained=path)``)."""

from __future__ import annotations

from supernets.pretrained.ofa import (
    OFA_FILES,
    convert_ofa_checkpoint,
    convert_ofa_state_dict,
    identify_ofa_state_dict,
    load_ofa_pretrained,
    read_ofa_state_dict,
)

__all__ = [
    "OFA_FILES",
    "convert_ofa_checkpoint",
    "convert_ofa_state_dict",
    "identify_ofa_state_dict",
    "load_ofa_pretrained",
    "read_ofa_state_dict",
]
