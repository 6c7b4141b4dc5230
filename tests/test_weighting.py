import math

import pytest
import torch

from scbloss.detection import object_weights

M = torch.tensor([1, 2, 4, 10])


def test_scb_values_from_the_paper_formula():
    assert object_weights(M, "scb").tolist() == pytest.approx([3.0, 2.540, 1.790, 0.991], abs=1e-3)


@pytest.mark.parametrize(
    "name,formula",
    [
        ("none", lambda m: 1.0),
        ("inv_log1p", lambda m: 1.0 / (math.log(m) + 1.0)),
        ("inv_sqrt", lambda m: 1.0 / math.sqrt(m)),
        ("inv", lambda m: 1.0 / m),
        ("scb", lambda m: 3.0 * (math.log(m) + 1.0) / m),
    ],
)
def test_table1_forms(name, formula):
    assert object_weights(M, name).tolist() == pytest.approx([formula(m) for m in M.tolist()], rel=1e-6)


def test_alpha_beta_are_configurable_and_zero_matches_weigh_nothing():
    weights = object_weights(torch.tensor([0, 3]), "scb", alpha=2.0, beta=0.5)
    assert weights.tolist() == pytest.approx([0.0, 0.5 * (math.log(3) + 2.0) / 3])


def test_unknown_weighting():
    with pytest.raises(ValueError, match="unknown weighting 'focal'"):
        object_weights(M, "focal")
