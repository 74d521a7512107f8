"""The lockstep fit of many trials (mmrm/batch.fit_contrasts) against the one-at-a-time array fit
(mmrm/arrays.fit_contrast), itself tested against fit_mmrm and SAS: same estimate, SE, df, p and CI
within 1e-9 relative; trials off the ordinary path are left to fit_contrast; the simulation's
results do not depend on which of the two fitted a trial."""

from __future__ import annotations

import numpy as np
import pytest

from regenheart.protocol import load_protocol
from regenheart.stats import simulate
from regenheart.stats.mmrm import batch
from regenheart.stats.mmrm.arrays import fit_contrast
from regenheart.stats.simulate import _design_arrays, _simulate_chunk, simulate_lvef, trial_designs
from regenheart.synth.model import DEFAULT_LVEF_MODEL

FIELDS = ("estimate", "std_error", "df", "p_value", "lower", "upper")


@pytest.fixture(scope="module")
def designs():
    return {d.key: d for d in trial_designs(load_protocol(), ["v1", "v2"])}


def _trials(design, dropout, n_trials, seed):
    cell = np.arange(design.n) < design.n_cell
    model = DEFAULT_LVEF_MODEL.scaled(cell_effect=2.0)
    data = [simulate_lvef(model, cell, dropout, np.random.default_rng(s))
            for s in np.random.SeedSequence(seed).spawn(n_trials)]
    arrays = [_design_arrays(b, c, cell if design.randomized else None) for b, c in data]
    return (np.stack([c for _, c in data]), np.stack([X for X, _ in arrays]), np.stack([l for _, l in arrays]))


@pytest.mark.parametrize("key", ["v1", "v2"])
@pytest.mark.parametrize("dropout", [0.0, 0.2, 0.5])
@pytest.mark.parametrize("method", ["reml", "ml"])
def test_lockstep_fits_equal_one_at_a_time_fits(designs, key, dropout, method):
    Y, X, L = _trials(designs[key], dropout, 25, seed=int(10 * dropout) + (7 if key == "v2" else 0)
                      + (100 if method == "ml" else 0))
    fits, done = batch.fit_contrasts(Y, X, L, method=method)
    assert done.all()
    for k in range(len(Y)):
        one = fit_contrast(Y[k], X[k], L[k], method=method)
        assert one.converged
        for name in FIELDS:
            assert fits[name][k] == pytest.approx(getattr(one, name), rel=1e-9, abs=1e-12), (k, name)


def test_trials_off_the_ordinary_path_are_left_to_fit_contrast(designs):
    Y, X, L = _trials(designs["v1"], 0.2, 4, seed=3)
    Y[1] = np.nan                      # no data at all
    Y[2, :30, 2] = np.nan              # no cell-arm patient at the last visit: rank deficient
    Y[3, 0] = np.nan                   # a subject without data is simply not analysed
    fits, done = batch.fit_contrasts(Y, X, L)
    assert done.tolist() == [True, False, False, True]
    assert np.isnan(fits["estimate"][1]) and np.isnan(fits["estimate"][2])
    one = fit_contrast(Y[3], X[3], L[3])
    assert fits["estimate"][3] == pytest.approx(one.estimate, rel=1e-9)
    assert fits["df"][3] == pytest.approx(one.df, rel=1e-9)


def test_unconverged_lockstep_trials_are_refitted_alone_with_the_same_result(designs, monkeypatch):
    design = designs["v1"]
    seeds = np.random.SeedSequence(21).spawn(12)
    model = DEFAULT_LVEF_MODEL.scaled(cell_effect=3.5)
    normal = _simulate_chunk(design, model, 0.2, seeds)
    monkeypatch.setattr(batch, "MAX_ITERATIONS", 3)  # a trial needing more iterations goes alone
    Y, X, L = _trials(design, 0.2, 12, seed=4)
    assert 0 < (~batch.fit_contrasts(Y, X, L)[1]).sum() < 12  # some trials do leave the lockstep path
    mixed = _simulate_chunk(design, model, 0.2, seeds)
    monkeypatch.setattr(simulate, "_batch_fits", lambda design: False)  # every trial alone
    alone = _simulate_chunk(design, model, 0.2, seeds)
    assert normal[:, 4].all()
    np.testing.assert_allclose(mixed, normal, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(alone, normal, rtol=1e-9, atol=1e-12)
