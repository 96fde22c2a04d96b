"""The interface every supernet family implements (see DESIGN.md, "Supernet")."""

from __future__ import annotations

import numpy as np
from torch import nn

from supernets.space import Arch, SearchSpace

__all__ = ["Supernet"]


class Supernet(nn.Module):
    """An elastic network whose active subnet is chosen by an :class:`Arch` of ``self.space``.

    Subclasses implement ``_apply_arch`` (make the elastic layers run ``arch``) and
    ``get_active_subnet`` (a static module with the same eval-mode output).
    The resolution gene is not applied to the module: the data pipeline resizes inputs to ``arch.r``.
    """

    name: str = "supernet"
    space: SearchSpace

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.space = space
        self._active: Arch | None = None

    # -- choosing the active subnet ---------------------------------------------------------
    def set_active_subnet(self, arch: Arch) -> None:
        if not isinstance(arch, Arch) or arch.space != self.space:
            raise ValueError(
                f"supernet {self.name!r} expects an Arch of space {self.space.name!r}, got {arch!r}; "
                f"build it with model.space.parse(...) or model.space.from_ofa_dict(...)"
            )
        self._apply_arch(arch)
        self._active = arch

    def sample_active_subnet(self, rng: np.random.Generator) -> Arch:
        arch = self.space.sample(rng)
        self.set_active_subnet(arch)
        return arch

    def set_max_net(self) -> Arch:
        arch = self.space.max_arch()
        self.set_active_subnet(arch)
        return arch

    def set_min_net(self) -> Arch:
        arch = self.space.min_arch()
        self.set_active_subnet(arch)
        return arch

    @property
    def active_arch(self) -> Arch:
        if self._active is None:
            self.set_max_net()
        assert self._active is not None
        return self._active

    # -- to implement -----------------------------------------------------------------------
    def _apply_arch(self, arch: Arch) -> None:
        raise NotImplementedError

    def get_active_subnet(self) -> nn.Module:
        """A static module (plain layers, copied weights) equal to the active subnet in eval mode."""
        raise NotImplementedError

    def sort_channels(self) -> None:
        """Re-sort elastic channels by importance so that the first channels matter most (OFA)."""
        raise NotImplementedError
