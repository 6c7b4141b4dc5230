"""The training loss of each detector family, as one callable: criterion(outputs, model, targets) -> losses."""

from __future__ import annotations

from typing import Sequence

import torch

from .loss import MultiBoxLoss, Target


class SingleShotCriterion:
    """SSD, FSSD, DSSD: the MultiBox loss on (loc, conf) against the model's priors."""

    def __init__(self, **loss_options) -> None:
        self.loss = MultiBoxLoss(**loss_options)

    def __call__(self, outputs, model, targets: Sequence[Target]) -> dict[str, torch.Tensor]:
        loc, conf = outputs
        return self.loss(loc.float(), conf.float(), model.priors, targets)


class RefineDetCriterion:
    """ARM loss / N_arm + ODM loss / N_odm (RefineDet, Eq. 1).

    The ARM learns objectness (every object labelled 1) on the original anchors; the ODM learns the classes on the
    ARM-refined anchors, without the anchors the ARM rejects (objectness <= 0.01) among its negatives. The
    per-object weighting applies to the ARM only (``scb_on="arm"``, the paper's Table 2 setting) or to both
    modules (``"arm_odm"``, the paper's 78.0 observation); the other module is unweighted.
    """

    def __init__(self, weighting: str = "scb", scb_on: str = "arm", reject: float = 0.01, **loss_options) -> None:
        if scb_on not in ("arm", "arm_odm"):
            raise ValueError(f"RefineDet: scb_on must be 'arm' or 'arm_odm', got {scb_on!r}")
        self.arm = MultiBoxLoss(weighting=weighting, **loss_options)
        self.odm = MultiBoxLoss(weighting=weighting if scb_on == "arm_odm" else "none", **loss_options)
        self.reject = reject

    def __call__(self, outputs, model, targets: Sequence[Target]) -> dict[str, torch.Tensor]:
        arm_loc, arm_conf, odm_loc, odm_conf = (o.float() for o in outputs)
        objectness = [{"boxes": t["boxes"], "labels": torch.ones_like(t["labels"])} for t in targets]
        arm = self.arm(arm_loc, arm_conf, model.priors, objectness)
        with torch.no_grad():
            rejected = arm_conf.softmax(dim=-1)[..., 1] <= self.reject
        odm = self.odm(odm_loc, odm_conf, model.refined_priors(arm_loc), targets, not_negative=rejected)
        return {
            "loss_cls": arm["loss_cls"] + odm["loss_cls"], "loss_loc": arm["loss_loc"] + odm["loss_loc"],
            "num_pos": odm["num_pos"], "arm_loss_cls": arm["loss_cls"], "arm_loss_loc": arm["loss_loc"],
            "arm_num_pos": arm["num_pos"],
        }


__all__ = ["RefineDetCriterion", "SingleShotCriterion"]
