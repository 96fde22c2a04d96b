"""Distillation losses between a student's logits and a teacher's (detached) logits.

- ``soft_ce``: cross-entropy against the teacher's softmax, OFA's ``kd_type='ce'`` (progressive shrinking).
- ``kl``: KL(teacher ‖ student), the in-place distillation loss of BigNAS / AttentiveNAS.
- ``alpha``: AlphaNet's adaptive alpha-divergence (Wang et al., *AlphaNet: Improved Training of Supernets
  with Alpha-Divergence*, ICML 2021): the larger of D_α₋ and D_α₊, with the teacher/student ratio clipped at
  ``beta`` so that the gradient stays bounded.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["LOSSES", "alpha_divergence", "get_distill_loss", "kl_divergence", "soft_cross_entropy"]


def soft_cross_entropy(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean over the batch of ``-Σ softmax(teacher/T) · log_softmax(student/T)``."""
    p = F.softmax(teacher / temperature, dim=-1)
    return -(p * F.log_softmax(student / temperature, dim=-1)).sum(-1).mean() * temperature**2


def kl_divergence(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean over the batch of KL(softmax(teacher/T) ‖ softmax(student/T)) (zero when they agree)."""
    log_q = F.log_softmax(student / temperature, dim=-1)
    log_p = F.log_softmax(teacher / temperature, dim=-1)
    return F.kl_div(log_q, log_p, log_target=True, reduction="batchmean") * temperature**2


def _alpha_div(log_p: torch.Tensor, log_q: torch.Tensor, alpha: float, log_beta: float) -> torch.Tensor:
    """D_α(p ‖ q) = (Σ p^α q^(1-α) − 1) / (α(α−1)) per sample; α→0 and α→1 fall back to the two KLs."""
    if abs(alpha) < 1e-6:
        return (log_q.exp() * (log_q - log_p)).sum(-1)  # KL(q ‖ p)
    if abs(alpha - 1.0) < 1e-6:
        return (log_p.exp() * (log_p - log_q)).sum(-1)  # KL(p ‖ q)
    # Σ q (p/q)^α with the ratio clipped to [1/β, β]: AlphaNet bounds the (p/q)^α factor for stability.
    log_ratio = (log_p - log_q).clamp(-log_beta, log_beta)
    s = (log_q.exp() * torch.exp(alpha * log_ratio)).sum(-1)
    return (s - 1.0) / (alpha * (alpha - 1.0))


def alpha_divergence(student: torch.Tensor, teacher: torch.Tensor, alpha_min: float = -1.0,
                     alpha_max: float = 1.0, beta: float = 5.0, temperature: float = 1.0) -> torch.Tensor:
    """AlphaNet's adaptive alpha-divergence ``max(D_αmin, D_αmax)``, averaged over the batch."""
    log_q = F.log_softmax(student / temperature, dim=-1)
    log_p = F.log_softmax(teacher / temperature, dim=-1)
    log_beta = math.log(beta)
    d_lo = _alpha_div(log_p, log_q, alpha_min, log_beta)
    d_hi = _alpha_div(log_p, log_q, alpha_max, log_beta)
    return torch.maximum(d_lo, d_hi).mean()


LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "soft_ce": soft_cross_entropy,
    "kl": kl_divergence,
    "alpha": alpha_divergence,
}


def get_distill_loss(name: str, **kwargs: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A ``loss(student_logits, teacher_logits)`` by name, with its keyword options bound."""
    if name not in LOSSES:
        raise ValueError(f"unknown distillation loss {name!r}; available: {sorted(LOSSES)}")
    fn = LOSSES[name]

    def loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return fn(student, teacher.detach(), **kwargs)

    return loss
