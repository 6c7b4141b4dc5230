"""The training loss of each detector family, as one callable: criterion(outputs, model, targets) -> losses.

A criterion returns every term of its loss under a name starting with ``loss_`` (the total is their sum, as in
detectron2) and ``num_pos``, the positive priors the normalizer counts. ``criterion.pad(outputs, model, targets)``
is its host-side step (the targets in the loss's frame, padded, labels checked); ``criterion.padded(outputs, model,
padded)`` is the loss proper, fixed-shape tensor code that compiles with the network into one graph.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..detectors.refinedet import REFINEDET_VARIANTS
from .loss import MultiBoxLoss, PaddedTargets, Target
from .priors import targets_for_loss

ARM_REJECT = 0.01  # RefineDet: anchors whose ARM objectness is at most this are not ODM negatives, nor detections


class SingleShotCriterion:
    """SSD, FSSD, DSSD: the MultiBox loss on (loc, conf) against the model's priors."""

    def __init__(self, **loss_options) -> None:
        self.loss = MultiBoxLoss(**loss_options)

    def __call__(self, outputs, model, targets: Sequence[Target]) -> dict[str, torch.Tensor]:
        return self.padded(outputs, model, self.pad(outputs, model, targets))

    def pad(self, outputs, model, targets: Sequence[Target]) -> PaddedTargets:
        """The targets in the frame of the model's loss priors, padded to the loss's object cap."""
        priors = model.loss_priors
        return self.loss.pad(
            targets_for_loss(model.layout, targets), outputs[1].shape[-1] - 1, priors.device, priors.dtype
        )

    def padded(self, outputs, model, targets: PaddedTargets) -> dict[str, torch.Tensor]:
        loc, conf = outputs
        return self.loss.forward_padded(loc.float(), conf.float(), model.loss_priors, targets)


class RefineDetCriterion:
    """ARM loss / N_arm + ODM loss / N_odm (RefineDet, Eq. 1).

    The ARM learns objectness (every object labelled 1) on the original anchors; the ODM learns the classes on the
    ARM-refined anchors, without the anchors the ARM rejects (objectness <= ``ARM_REJECT``) among its negatives.
    ``variant`` says where the per-object weighting applies: the ARM only ("arm", the paper's Table 2 setting) or
    both modules ("arm_odm", the paper's 78.0 observation); the other module is unweighted.
    """

    def __init__(self, weighting: str = "scb", variant: str = "arm", **loss_options) -> None:
        if variant not in REFINEDET_VARIANTS:
            raise ValueError(f"RefineDet: variant must be one of {', '.join(REFINEDET_VARIANTS)}, got {variant!r}")
        self.arm = MultiBoxLoss(weighting=weighting, **loss_options)
        self.odm = MultiBoxLoss(weighting=weighting if variant == "arm_odm" else "none", **loss_options)

    def __call__(self, outputs, model, targets: Sequence[Target]) -> dict[str, torch.Tensor]:
        return self.padded(outputs, model, self.pad(outputs, model, targets))

    def pad(self, outputs, model, targets: Sequence[Target]) -> PaddedTargets:
        """The targets padded once, to the ODM loss's object cap; the ARM's objectness targets derive from them."""
        return self.odm.pad(targets, outputs[3].shape[-1] - 1, model.priors.device, model.priors.dtype)

    def padded(self, outputs, model, targets: PaddedTargets) -> dict[str, torch.Tensor]:
        arm_loc, arm_conf, odm_loc, odm_conf = (o.float() for o in outputs)
        objectness = PaddedTargets(targets.boxes, targets.valid.long(), targets.valid)  # every object labelled 1
        arm = self.arm.forward_padded(arm_loc, arm_conf, model.priors, objectness)
        with torch.no_grad():
            rejected = arm_conf.softmax(dim=-1)[..., 1] <= ARM_REJECT
        odm = self.odm.forward_padded(odm_loc, odm_conf, model.refined_priors(arm_loc), targets, not_negative=rejected)
        return {
            "loss_arm_cls": arm["loss_cls"],
            "loss_arm_loc": arm["loss_loc"],
            "loss_odm_cls": odm["loss_cls"],
            "loss_odm_loc": odm["loss_loc"],
            "num_pos": odm["num_pos"],
            "num_pos_arm": arm["num_pos"],
        }


def total_loss(losses: dict[str, torch.Tensor]) -> torch.Tensor:
    """The sum of every ``loss_*`` term a criterion returned."""
    return sum(value for key, value in losses.items() if key.startswith("loss_"))


__all__ = ["ARM_REJECT", "RefineDetCriterion", "SingleShotCriterion", "total_loss"]
