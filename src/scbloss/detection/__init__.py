"""The detection core: priors, matching, box coding, the scale-balanced MultiBox loss and post-processing.

Names are imported on first use: the workflow reads the prior layouts and the weighting forms when it parses, and
that must not cost the seconds of importing torch.
"""

from importlib import import_module

_EXPORTS = {
    "BoxCoder": "box_coder",
    "MultiBoxLoss": "loss",
    "PriorLayout": "layout",
    "WEIGHTINGS": "weighting",
    "generate_priors": "priors",
    "match": "matcher",
    "matching_counts": "matcher",
    "object_weights": "weighting",
    "postprocess": "detections",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted(_EXPORTS)


__all__ = sorted(_EXPORTS)
