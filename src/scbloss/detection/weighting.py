"""Per-object loss weights W(M) from the number of priors M an object matched (paper Eq. 3 and Table 1).

Written with tensor methods only, so the names of the forms import without torch (the workflow checks table
files against them when it parses).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

WeightFn = Callable[["torch.Tensor", float, float], "torch.Tensor"]


def _none(m: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    return m.new_ones(m.shape)


def _inv_log1p(m: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    return 1.0 / (m.log() + 1.0)


def _inv_sqrt(m: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    return m.rsqrt()


def _inv(m: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    return 1.0 / m


def _scb(m: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    return beta * (m.log() + alpha) / m


WEIGHTINGS: dict[str, WeightFn] = {
    "none": _none,  # Table 1 row "1": plain SSD
    "inv_log1p": _inv_log1p,  # 1 / (log M + 1)
    "inv_sqrt": _inv_sqrt,  # 1 / sqrt(M)
    "inv": _inv,  # 1 / M
    "scb": _scb,  # beta (log M + alpha) / M; Table 1 prints it as (log M + 1)/M, its 78.2 is Table 2's alpha=1, beta=3
}


def object_weights(counts: torch.Tensor, weighting: str, alpha: float = 1.0, beta: float = 3.0) -> torch.Tensor:
    """W for each object from its match count M (natural log). Objects with M = 0 hold no prior and get weight 0."""
    import torch

    try:
        fn = WEIGHTINGS[weighting]
    except KeyError:
        raise ValueError(f"unknown weighting {weighting!r}; choose one of {sorted(WEIGHTINGS)}") from None
    m = counts if counts.is_floating_point() else counts.to(torch.get_default_dtype())
    weights = fn(m.clamp(min=1.0), alpha, beta)
    return weights.masked_fill(m <= 0, 0.0)


APPLY_TO = ("cls", "cls+loc")  # the positives' classification loss only (the authors' code), or their box loss too


def check_weighting(weighting: str, apply_to: str = "cls") -> None:
    """A weighting form and what it applies to, or a ValueError naming the choices."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; choose one of {', '.join(WEIGHTINGS)}")
    if apply_to not in APPLY_TO:
        raise ValueError(f"apply_to must be one of {', '.join(APPLY_TO)}, got {apply_to!r}")


__all__ = ["APPLY_TO", "WEIGHTINGS", "check_weighting", "object_weights"]
