"""Distillation losses between a student's logits and a teacher's (detached) logits.

- ``soft_ce``: cross-entropy against the teacher's softmax, OFA's ``kd_type='ce'`` (progressive shrinking).
- ``kl``: KL(teacher ‖ student), the in-place distillation loss of BigNAS / AttentiveNAS.
- ``alpha``: AlphaNet's adaptive alpha-divergence (Wang et al., *AlphaNet: Improved Training of Supernets
  with Alpha-Divergence*, ICML 2021): the larger of D_α₋ and D_α₊, with the importance weight (p/q)^α clipped to
  [0, ``beta``] so that the gradient stays bounded (its ``f_divergence``).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.nn.functional as F

__all__ = ["LOSSES", "alpha_divergence", "create_distill_loss", "kl_divergence", "list_distill_losses",
           "register_distill_loss", "soft_cross_entropy"]


#: loss name -> ``f(student, teacher, **options)``: the timm-style registry (as supernets, data modules, search
#: algorithms and predictor kinds have), filled by :func:`register_distill_loss`.
LOSSES: dict[str, Callable[..., torch.Tensor]] = {}
F_ = TypeVar("F_", bound=Callable[..., torch.Tensor])


def register_distill_loss(name: str) -> Callable[[F_], F_]:
    """Register ``f(student_logits, teacher_logits, **options)`` under ``name`` (the short name configs use)."""
    def deco(fn: F_) -> F_:
        if name in LOSSES and LOSSES[name] is not fn:
            raise ValueError(f"distillation loss {name!r} is registered twice")
        LOSSES[name] = fn
        return fn

    return deco


def list_distill_losses(pattern: str = "*") -> list[str]:
    return sorted(n for n in LOSSES if fnmatch.fnmatch(n, pattern))


@register_distill_loss("soft_ce")
def soft_cross_entropy(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean over the batch of ``-Σ softmax(teacher/T) · log_softmax(student/T)``."""
    p = F.softmax(teacher / temperature, dim=-1)
    return -(p * F.log_softmax(student / temperature, dim=-1)).sum(-1).mean() * temperature**2


@register_distill_loss("kl")
def kl_divergence(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean over the batch of KL(softmax(teacher/T) ‖ softmax(student/T)) (zero when they agree)."""
    log_q = F.log_softmax(student / temperature, dim=-1)
    log_p = F.log_softmax(teacher / temperature, dim=-1)
    return F.kl_div(log_q, log_p, log_target=True, reduction="batchmean") * temperature**2


def _alpha_div(log_p: torch.Tensor, log_q: torch.Tensor, alpha: float,
               beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """AlphaNet's ``f_divergence``: per sample, D_α(p ‖ q) = Σ q (w − 1) / (α(α−1)) with the importance weight
    w = (p/q)^α clipped to [0, β], and a surrogate whose gradient is AlphaNet's, −Σ q ρ_f ∇log q (q, ρ_f fixed;
    ρ_f = w/α + 1/(α(α−1))). α ≈ 0 gives KL(q ‖ p) with p/q clipped at β; α ≈ 1 gives KL(p ‖ q), unclipped."""
    q = log_q.detach().exp()
    log_ratio = log_p - log_q.detach()  # log(p/q), in log space: p/q overflows where q underflows
    if abs(alpha) < 1e-3:
        log_w = log_ratio.clamp(max=math.log(beta))
        qf, q_rho = -q * log_w, q * (log_w - 1.0)
    elif abs(alpha - 1.0) < 1e-3:
        p = log_p.exp()  # q · (p/q) log(p/q) = p log(p/q)
        qf, q_rho = p * log_ratio, p
    else:
        base = 1.0 / (alpha * (alpha - 1.0))
        w = torch.exp(alpha * log_ratio).clamp(max=beta)
        qf, q_rho = q * (w - 1.0) * base, q * (w / alpha + base)
    return qf.sum(-1), -(q_rho * log_q).sum(-1)


@register_distill_loss("alpha")
def alpha_divergence(student: torch.Tensor, teacher: torch.Tensor, alpha_min: float = -1.0,
                     alpha_max: float = 1.0, beta: float = 5.0, temperature: float = 1.0) -> torch.Tensor:
    """AlphaNet's adaptive alpha-divergence ``max(D_αmin, D_αmax)`` per sample, averaged over the batch.

    The value is the (clipped) divergence; the gradient is that of AlphaNet's surrogate for the larger of the
    two (with the clipped weight where (p/q)^α > β, rather than the clamp's zero gradient)."""
    log_q = F.log_softmax(student / temperature, dim=-1)
    log_p = F.log_softmax(teacher.detach() / temperature, dim=-1)
    d_lo, s_lo = _alpha_div(log_p, log_q, alpha_min, beta)
    d_hi, s_hi = _alpha_div(log_p, log_q, alpha_max, beta)
    lo = d_lo > d_hi  # AlphaNet: torch.gt(loss_left, loss_right), ties to alpha_max
    value, surrogate = torch.where(lo, d_lo, d_hi), torch.where(lo, s_lo, s_hi)
    return (value.detach() + surrogate - surrogate.detach()).mean()


def create_distill_loss(name: str, **kwargs: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A ``loss(student_logits, teacher_logits)`` by name, with its keyword options bound (the ``_target_`` of
    ``loss.distill`` in ``configs/train.yaml``)."""
    if name not in LOSSES:
        raise ValueError(f"unknown distillation loss {name!r}; available: {list_distill_losses()}")
    fn = LOSSES[name]

    def loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return fn(student, teacher.detach(), **kwargs)

    return loss
