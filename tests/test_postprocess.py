import pytest
import torch

from scbloss.detection import postprocess

PRIORS = torch.tensor(
    [
        [0.10, 0.10, 0.50, 0.50],
        [0.12, 0.10, 0.52, 0.50],  # IoU 0.905 with prior 0
        [0.60, 0.60, 0.90, 0.90],  # far from both
        [0.10, 0.30, 0.50, 0.70],  # IoU 1/3 with prior 0
    ]
)


def _logits(probs):
    """Logits whose softmax is ``probs`` (rows over background + classes)."""
    return torch.tensor(probs).log()[None]


def test_nms_is_per_class_and_scores_sorted():
    conf = _logits(
        [
            [0.1, 0.9, 0.0 + 1e-9],  # class 1 at 0.9
            [0.2, 0.8 - 1e-9, 1e-9],  # class 1 at 0.8, overlaps prior 0 -> suppressed
            [0.3, 1e-9, 0.7 - 1e-9],  # class 2 at 0.7
            [0.4, 0.6 - 1e-9, 1e-9],  # class 1 at 0.6, IoU 1/3 < 0.45 -> kept
        ]
    )
    out = postprocess(torch.zeros(1, 4, 4), conf, PRIORS, score_threshold=0.01)[0]
    assert out["labels"].tolist() == [1, 2, 1]
    assert out["scores"].tolist() == pytest.approx([0.9, 0.7, 0.6], abs=1e-6)
    assert torch.allclose(out["boxes"], PRIORS[[0, 2, 3]], atol=1e-6)


def test_same_box_other_class_is_not_suppressed():
    conf = _logits([[0.1, 0.5, 0.4]] * 1 + [[1.0 - 2e-9, 1e-9, 1e-9]] * 3)
    out = postprocess(torch.zeros(1, 4, 4), conf, PRIORS)[0]
    assert sorted(out["labels"].tolist()) == [1, 2]


def test_score_threshold_and_top_k():
    priors = torch.rand(500, 2).repeat(1, 2) * 0.9 + torch.tensor([0, 0, 0.01, 0.01])  # tiny, disjoint-ish boxes
    conf = torch.randn(1, 500, 4)
    out = postprocess(torch.zeros(1, 500, 4), conf, priors, score_threshold=0.0, nms_iou=1.0, top_k=200)[0]
    assert len(out["scores"]) == 200
    all_scores = conf.softmax(-1)[0, :, 1:].flatten().sort(descending=True).values
    assert torch.allclose(out["scores"], all_scores[:200])
    high = postprocess(
        torch.zeros(1, 500, 4), conf, priors, score_threshold=0.5, nms_iou=1.0, top_k=10_000, pre_nms_top_k=None
    )[0]
    assert len(high["scores"]) == int((all_scores > 0.5).sum())


def test_decoding_moves_boxes():
    loc = torch.zeros(1, 4, 4)
    loc[0, 2] = torch.tensor([1.0, 0.0, 0.0, 0.0])  # shift by 0.1 * width = 0.03
    conf = _logits([[1.0 - 2e-9, 1e-9, 1e-9]] * 2 + [[0.0 + 1e-9, 1.0 - 2e-9, 1e-9]] + [[1.0 - 2e-9, 1e-9, 1e-9]])
    out = postprocess(loc, conf, PRIORS)[0]
    assert torch.allclose(out["boxes"][0], torch.tensor([0.63, 0.60, 0.93, 0.90]), atol=1e-6)


def test_shape_mismatch_is_named():
    with pytest.raises(ValueError, match="postprocess"):
        postprocess(torch.zeros(1, 4, 4), torch.zeros(1, 5, 3), PRIORS)
