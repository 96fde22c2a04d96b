"""The interface every supernet family implements (see DESIGN.md, "Supernet")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from supernets.space import Arch, SearchSpace

__all__ = ["Supernet"]

_EXTRA_STATE_KEY = "_extra_state"


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
        self.loaded_from: str | None = None  # registry name recorded in the last loaded checkpoint

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

    def sort_channels(self, expand_stage: int = 0) -> None:
        """Re-sort elastic channels by importance so that the first channels matter most (OFA).

        Args:
            expand_stage: 0 sorts freely; k ≥ 1 (progressive shrinking's k-th expand phase, OFA's
                ``expand_ratio_stage``) moves channels only within the bands cut by the k+1 largest expand
                ratios, so the channel sets earlier phases trained stay in place.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------------------ checkpoints
    def get_extra_state(self) -> torch.Tensor:
        # The registry name, so loading a checkpoint into the wrong supernet can say where it came from.
        # A uint8 tensor rather than a dict: tools that walk state_dict values (EMA, .to(), cloning) see tensors.
        return torch.tensor(list(self.name.encode()), dtype=torch.uint8)

    def set_extra_state(self, state: Any) -> None:
        name = _recorded_name(state)
        if name:
            self.loaded_from = name  # the supernet the last loaded checkpoint was saved from

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """``nn.Module.load_state_dict`` that explains a checkpoint of another supernet (or other
        ``num_classes``/``in_chans``) naming both supernets, instead of torch's list of every key."""
        own = self.state_dict()
        source = _recorded_name(state_dict.get(_EXTRA_STATE_KEY))
        missing = [k for k in own if k not in state_dict and k != _EXTRA_STATE_KEY]
        unexpected = [k for k in state_dict if k not in own]
        shapes = [f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
                  for k, v in own.items() if k != _EXTRA_STATE_KEY and k in state_dict
                  and tuple(getattr(state_dict[k], "shape", ())) != tuple(v.shape)]
        if shapes or (strict and (missing or unexpected)):
            origin = f"supernet {source!r}" if source else "a model that recorded no supernet name"
            parts = [f"{len(lst)} {what} (e.g. {', '.join(lst[:3])})"
                     for what, lst in (("missing keys", missing), ("unexpected keys", unexpected),
                                       ("shape mismatches", shapes)) if lst]
            hint = f"create_supernet({source!r}, ...)" if source else "the supernet the checkpoint was saved from"
            raise ValueError(
                f"checkpoint of {origin} does not fit supernet {self.name!r} (space {self.space.name!r}, "
                f"num_classes={getattr(self, 'num_classes', '?')}, in_chans={getattr(self, 'in_chans', '?')}): {'; '.join(parts)}. "
                f"Load it into {hint} with the num_classes and in_chans it was trained with."
            )
        if _EXTRA_STATE_KEY not in state_dict:  # plain state dicts (or partial ones, e.g. BN statistics)
            state_dict = {**state_dict, _EXTRA_STATE_KEY: torch.zeros(0, dtype=torch.uint8)}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def _recorded_name(state: Any) -> str | None:
    if isinstance(state, torch.Tensor) and state.dtype == torch.uint8 and state.dim() == 1:
        try:
            return bytes(state.tolist()).decode()
        except UnicodeDecodeError:
            return None
    return None
