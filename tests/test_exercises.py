"""Exercise checks: the reference passes, typical mistakes get a specific message, and a skipped
or broken answer falls back to the reference."""
import numpy as np
import torch

from tutorial_utils import metrics
from tutorial_utils.exercises import nb1 as exercises
from tutorial_utils.masking import mask_time_bins
from tutorial_utils.models.ndt1 import sinusoidal_positional_encoding
from tutorial_utils.objectives import masked_poisson_loss


def _not_done(*args):
    raise NotImplementedError


def test_references_pass(capsys):
    assert exercises.check_mask_time_bins(mask_time_bins) is mask_time_bins
    assert exercises.check_masked_poisson_loss(masked_poisson_loss) is masked_poisson_loss
    assert exercises.check_positional_encoding(sinusoidal_positional_encoding) is sinusoidal_positional_encoding
    assert exercises.check_fit_linear_map(metrics.fit_linear_map) is metrics.fit_linear_map
    assert capsys.readouterr().out.count("[ok]") == 4


def test_skipped_exercises_fall_back_and_say_so(capsys):
    for check, reference in [(exercises.check_mask_time_bins, mask_time_bins),
                             (exercises.check_masked_poisson_loss, masked_poisson_loss),
                             (exercises.check_positional_encoding, sinusoidal_positional_encoding),
                             (exercises.check_fit_linear_map, metrics.fit_linear_map)]:
        assert check(_not_done) is reference
    out = capsys.readouterr().out
    assert out.count("not attempted yet") == 4 and out.count("continues with the reference") == 4


def test_mask_mistakes_are_named(capsys):
    def same_mask_for_all(spikes, ratio, generator=None):
        mask = torch.zeros(spikes.shape[:2], dtype=torch.bool)
        mask[:, :round(ratio * spikes.shape[1])] = True
        return spikes.masked_fill(mask[..., None], 0), mask

    def in_place(spikes, ratio, generator=None):
        masked, mask = mask_time_bins(spikes, ratio, generator)
        spikes[mask] = 0
        return spikes, mask

    assert exercises.check_mask_time_bins(same_mask_for_all) is mask_time_bins
    assert exercises.check_mask_time_bins(in_place) is mask_time_bins
    out = capsys.readouterr().out
    assert "same masked bins" in out and "in place" in out


def test_loss_mistakes_are_named(capsys):
    def all_bins(log_rates, spikes, mask):
        return masked_poisson_loss(log_rates, spikes, torch.ones_like(mask))

    def wrong_sign(log_rates, spikes, mask):
        return -masked_poisson_loss(log_rates, spikes, mask)

    def crashes(log_rates, spikes, mask):
        return log_rates @ spikes  # shape error

    for fn in (all_bins, wrong_sign, crashes):
        assert exercises.check_masked_poisson_loss(fn) is masked_poisson_loss
    out = capsys.readouterr().out
    assert "only the masked bins" in out and "opposite sign" in out and "your code raised RuntimeError" in out


def test_encoding_and_alignment_mistakes_are_named(capsys):
    def swapped(n_bins, d_model):  # cos in the even columns, sin in the odd ones
        pe = sinusoidal_positional_encoding(n_bins, d_model)
        out = pe.clone()
        out[:, 0::2], out[:, 1::2] = pe[:, 1::2], pe[:, 0::2]
        return out

    def no_intercept(source, target):
        x = source.reshape(-1, source.shape[-1])
        return np.linalg.lstsq(x, target.reshape(-1, target.shape[-1]), rcond=None)[0]

    exercises.check_positional_encoding(swapped)
    exercises.check_fit_linear_map(no_intercept)
    out = capsys.readouterr().out
    assert "swapped" in out and "intercept" in out
