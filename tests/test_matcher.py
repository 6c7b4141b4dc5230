import pytest
import torch

from scbloss.detection import match, matching_counts
from scbloss.detection.iou import iou_padded
from scbloss.detection.matcher import match_concat, match_padded, padded_counts

PRIORS = torch.tensor(
    [
        [0.0, 0.0, 0.2, 0.2],  # P0
        [0.0, 0.0, 0.4, 0.4],  # P1
        [0.5, 0.5, 1.0, 1.0],  # P2
        [0.6, 0.6, 1.0, 1.0],  # P3
        [0.1, 0.1, 0.3, 0.3],  # P4
    ]
)


def test_threshold_and_forced_match():
    gts = torch.tensor(
        [
            [0.0, 0.0, 0.4, 0.4],  # A: IoU 1 with P1, 0.25 with P0 and P4
            [0.55, 0.55, 1.0, 1.0],  # B: IoU 0.81 with P2, 0.79 with P3
            [0.15, 0.15, 0.25, 0.25],  # C: best IoU 0.25 (P4), nothing >= 0.5 -> forced onto P4
        ]
    )
    matched = match(gts, PRIORS)
    assert matched.tolist() == [-1, 0, 1, 1, 2]
    assert matching_counts(matched, 3).tolist() == [1, 2, 1]


def test_shared_best_prior_goes_to_the_later_ground_truth():
    gts = torch.tensor([[0.0, 0.0, 0.4, 0.4], [0.0, 0.0, 0.38, 0.38]])  # both have P1 as best prior
    matched = match(gts, PRIORS[:3])
    assert matched.tolist() == [-1, 1, -1]
    assert matching_counts(matched, 2).tolist() == [0, 1]


def test_no_ground_truth_matches_nothing():
    matched = match(torch.zeros(0, 4), PRIORS)
    assert matched.tolist() == [-1] * 5
    assert matching_counts(matched, 0).tolist() == []


def test_batched_matching_equals_per_image():
    """match_concat (the loss's path: every image's objects concatenated) equals matching image by image."""
    priors = torch.rand(300, 2).repeat(1, 2) + torch.tensor([0, 0, 0.05, 0.05]) * torch.rand(300, 1).add(1)
    per_image = [torch.rand(n, 2).repeat(1, 2) + torch.tensor([0, 0, 0.1, 0.1]) for n in (3, 0, 7)]
    image_of_gt = torch.repeat_interleave(torch.arange(3), torch.tensor([len(b) for b in per_image]))
    batched = match_concat(torch.cat(per_image), image_of_gt, 3, priors)
    counts = matching_counts(batched, 10)
    offset = 0
    for i, b in enumerate(per_image):
        single = match(b, priors)
        assert torch.equal(batched[i], torch.where(single >= 0, single + offset, single))
        assert counts[offset : offset + len(b)].tolist() == matching_counts(single, len(b)).tolist()
        offset += len(b)


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"gt_boxes must be \[G, 4\]"):
        match(torch.zeros(3, 5), PRIORS)
    with pytest.raises(ValueError, match=r"priors must be \[A, 4\]"):
        match(torch.zeros(3, 4), torch.zeros(4))


def test_exact_ties_go_to_the_lower_ground_truth_and_the_first_prior():
    """Whole-pixel boxes: C = [0, 0, 10, 20] has IoU 0.5 with P0 and P2, D = [0, 0, 20, 10] IoU 0.5 with P0 and P1.
    Above the threshold P0 goes to C (the lower index); forced, both best priors are P0 (the first of each tie),
    and the later ground truth, D, keeps it: P0 -> D, P1 -> D, P2 -> C."""
    priors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [10.0, 0.0, 20.0, 10.0], [0.0, 10.0, 10.0, 20.0]])
    gts = torch.tensor([[0.0, 0.0, 10.0, 20.0], [0.0, 0.0, 20.0, 10.0]])
    matched = match(gts, priors)
    assert matched.tolist() == [1, 1, 0]
    assert matching_counts(matched, 2).tolist() == [1, 2]
    padded = torch.cat([gts, torch.zeros(2, 4)])[None]  # two padding slots: they take nothing
    valid = torch.tensor([[True, True, False, False]])
    assert match_padded(iou_padded(padded, priors), valid).tolist() == [[1, 1, 0]]
    assert padded_counts(match_padded(iou_padded(padded, priors), valid), 4).tolist() == [[1, 2, 0, 0]]
