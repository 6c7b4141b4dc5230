import torch

from scbloss.detection import BoxCoder


def test_encode_by_hand():
    prior = torch.tensor([[0.2, 0.2, 0.6, 0.4]])  # centre (0.4, 0.3), size (0.4, 0.2)
    box = torch.tensor([[0.3, 0.2, 0.7, 0.6]])  # centre (0.5, 0.4), size (0.4, 0.4)
    offsets = BoxCoder((0.1, 0.2)).encode(box, prior)
    expected = torch.tensor(
        [[(0.5 - 0.4) / (0.1 * 0.4), (0.4 - 0.3) / (0.1 * 0.2), 0.0, torch.log(torch.tensor(2.0)) / 0.2]]
    )
    assert torch.allclose(offsets, expected, atol=1e-6)


def test_decode_inverts_encode():
    coder = BoxCoder()
    priors = torch.rand(100, 2).repeat(1, 2) + torch.rand(100, 2).repeat(1, 2) * torch.tensor([0, 0, 1, 1]) + 0.01
    boxes = torch.rand(100, 2).repeat(1, 2) + torch.rand(100, 2).repeat(1, 2) * torch.tensor([0, 0, 1, 1]) + 0.01
    assert torch.allclose(coder.decode(coder.encode(boxes, priors), priors), boxes, atol=1e-5)


def test_matches_torchvision_box_coder_with_ssd_weights():
    from torchvision.models.detection._utils import BoxCoder as TorchvisionBoxCoder

    priors = torch.tensor([[10.0, 20.0, 50.0, 80.0], [0.0, 0.0, 30.0, 30.0]])
    boxes = torch.tensor([[12.0, 18.0, 60.0, 70.0], [5.0, 5.0, 20.0, 40.0]])
    theirs = TorchvisionBoxCoder(weights=(10.0, 10.0, 5.0, 5.0)).encode_single(boxes, priors)
    assert torch.allclose(BoxCoder().encode(boxes, priors), theirs, atol=1e-5)
