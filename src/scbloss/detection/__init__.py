"""The detection core: priors, matching, box coding, the scale-balanced MultiBox loss and post-processing."""

from .box_coder import BoxCoder
from .loss import MultiBoxLoss
from .matcher import match, match_batch, matching_counts, matching_counts_batch
from .postprocess import postprocess
from .priors import PriorLayout, generate_priors, ssd_layout
from .weighting import WEIGHTINGS, object_weights

__all__ = [
    "BoxCoder",
    "MultiBoxLoss",
    "PriorLayout",
    "WEIGHTINGS",
    "generate_priors",
    "match",
    "match_batch",
    "matching_counts",
    "matching_counts_batch",
    "object_weights",
    "postprocess",
    "ssd_layout",
]
