"""The recipe ablation on a tiny case: one row per variant, each variant really changed."""
import pytest
import torch

from tutorial_utils import ablation
from tutorial_utils.data import make_lorenz_dataset
from tutorial_utils.runtime import get_profile


def test_tiny_ablation_table():
    dataset = make_lorenz_dataset(n_trials=20, n_bins=12, n_neurons=6, seed=1)
    variants = (ablation.RECIPE, ablation.Variant("no positional encoding", positional_encoding=False))
    table = ablation.run_ndt1_ablation(dataset, profile=get_profile("quick"), variants=variants, epochs=2,
                                       device="cpu")
    assert list(table.index) == ["NDT1 recipe", "no positional encoding"]
    assert list(table["positional encoding"]) == ["yes", "no"]
    assert {"rate R2", "latent R2", "bits/spike"} <= set(table.columns)
    assert table[["rate R2", "latent R2", "bits/spike"]].notna().all().all()
    assert (table["epochs"] <= 2).all()
    assert table.attrs == dict(profile="quick", trials=20, max_epochs=2, device="cpu")
    assert "20 Lorenz trials" in ablation.describe_ablation(table)
    # the two rows differ only in the positional encoding, so their scores differ
    assert table.loc["NDT1 recipe", "bits/spike"] != table.loc["no positional encoding", "bits/spike"]


def test_without_positional_encoding_the_hidden_bins_of_a_trial_get_one_prediction():
    """The ablated model cannot tell hidden (all-zero) bins apart, which is what the notebook's Think! claims;
    with the encoding it can."""
    spikes = torch.poisson(torch.full((2, 12, 6), 1.5), generator=torch.Generator().manual_seed(0))
    spikes[:, [2, 7]] = 0.0  # two hidden bins
    for variant, same in [(ablation.Variant("no pe", positional_encoding=False), True), (ablation.RECIPE, False)]:
        model = ablation.build_model(variant, n_neurons=6, n_bins=12).eval()
        with torch.no_grad():
            rates = model(spikes)
        assert torch.allclose(rates[:, 2], rates[:, 7], atol=1e-5) is same, variant.name
    assert not ablation.build_model(ablation.Variant("no pe", positional_encoding=False), 6, 12) \
        .core.positional_encoding.any()


def test_epochs_must_be_positive():
    with pytest.raises(ValueError, match="epochs must be at least 1"):
        ablation.run_ndt1_ablation(make_lorenz_dataset(n_trials=20, n_bins=12, n_neurons=6), epochs=0)
