"""Notebook 4A's exercise checks: the references pass, typical mistakes are named, crashes fall back."""
import numpy as np
import torch

from tutorial_utils.exercises import nb4a
from tutorial_utils.masking import hide_units, intra_region_view
from tutorial_utils.metrics import bits_per_spike
from tutorial_utils.models.ndt1 import run_with_prompt
from tutorial_utils.mtm_metrics import inter_region_bits_per_spike


def test_references_pass(capsys):
    assert nb4a.check_intra_region_view(intra_region_view) is intra_region_view
    assert nb4a.check_run_with_prompt(run_with_prompt) is run_with_prompt
    assert nb4a.check_inter_region_bits_per_spike(inter_region_bits_per_spike) is inter_region_bits_per_spike
    assert capsys.readouterr().out.count("[ok]") == 3


def test_intra_region_mistakes_are_named(capsys):
    def others_visible(spikes, in_region, targets):
        return hide_units(spikes, targets), targets[:, None, :].expand(-1, spikes.shape[1], -1)

    def scores_whole_area(spikes, in_region, targets):
        return intra_region_view(spikes, in_region, targets)[0], in_region[:, None, :].expand(-1, spikes.shape[1], -1)

    def cpu_mask(spikes, in_region, targets):
        keep = (in_region & ~targets).float() * torch.ones(in_region.shape)  # ones on the CPU
        return spikes * keep[:, None, :], targets[:, None, :].expand(-1, spikes.shape[1], -1)

    for wrong, words in [(others_visible, "own* area only"), (scores_whole_area, "whole area"),
                         (cpu_mask, "crash on a GPU")]:
        assert nb4a.check_intra_region_view(wrong) is intra_region_view
        assert words in capsys.readouterr().out


def test_prompt_mistakes_are_named(capsys):
    def keeps_prompt(core, tokens, prompt, causal=False):
        x = torch.cat([prompt, tokens + core.positional_encoding[:tokens.shape[1]]], 1)
        return core.norm(core.layers(x))

    def encodes_prompt(core, tokens, prompt, causal=False):
        return core(torch.cat([prompt, tokens], 1)[:, :-1])

    def ignores_prompt(core, tokens, prompt, causal=False):
        return core(tokens, causal)

    def never_causal(core, tokens, prompt, causal=False):
        x = torch.cat([prompt, tokens + core.positional_encoding[:tokens.shape[1]]], 1)
        return core.norm(core.layers(x))[:, 1:]

    for wrong, words in [(keeps_prompt, "still holds the prompt"), (encodes_prompt, "positional encoding"),
                         (ignores_prompt, "does not depend on the prompt"), (never_causal, "with causal=True")]:
        assert nb4a.check_run_with_prompt(wrong) is run_with_prompt
        assert words in capsys.readouterr().out


def test_inter_region_mistakes_are_named(capsys):
    def pooled(predict_rates, spikes, areas):
        rates = np.zeros(spikes.shape)
        for r in np.unique(areas):
            rates[:, :, areas == r] = predict_rates(areas != r)[:, :, areas == r]
        return bits_per_spike(rates, spikes)

    def shows_everything(predict_rates, spikes, areas):
        return inter_region_bits_per_spike(lambda visible: predict_rates(np.ones_like(visible)), spikes, areas)

    def not_attempted(predict_rates, spikes, areas):
        raise NotImplementedError

    for wrong, words in [(pooled, "pools all spikes"), (shows_everything, "showed every unit"),
                         (not_attempted, "not attempted")]:
        assert nb4a.check_inter_region_bits_per_spike(wrong) is inter_region_bits_per_spike
        assert words in capsys.readouterr().out
