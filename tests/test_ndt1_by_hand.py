"""The hand-written forward pass (Notebook 1's reference) computes exactly what NDT1 computes."""
import pytest
import torch

from tutorial_utils.models import NDT1, ndt1_by_hand


@pytest.mark.parametrize("sizes", [dict(n_neurons=7, n_bins=12), dict(n_neurons=6, n_bins=12, d_model=8, n_heads=2),
                                   dict(n_neurons=5, n_bins=9, d_model=12, n_layers=3, n_heads=3)])
def test_matches_the_package_model(sizes):
    torch.manual_seed(0)
    model = NDT1(**sizes).eval()
    spikes = torch.poisson(torch.full((4, 9, sizes["n_neurons"]), 1.5))
    with torch.no_grad():
        torch.testing.assert_close(ndt1_by_hand.ndt1_forward(model, spikes), model(spikes), rtol=1e-4, atol=1e-5)


def test_attention_weights_are_per_layer_distributions_over_keys():
    torch.manual_seed(0)
    model = NDT1(6, 10, d_model=8, n_heads=2, n_layers=3).eval()
    weights = ndt1_by_hand.attention_weights(model, torch.poisson(torch.full((2, 10, 6), 1.0)))
    assert len(weights) == 3 and all(w.shape == (2, 2, 10, 10) for w in weights)
    for w in weights:
        torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, 10))
