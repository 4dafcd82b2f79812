"""Prior/posterior predictive simulation and simulation of new designs."""

import numpy as np
import pandas as pd
import pytest

import bayes_nlme as bn
from bayes_nlme.model_zoo import theophylline as zoo


@pytest.fixture(scope="module")
def theo():
    return bn.read_nonmem(zoo.data())


@pytest.fixture(scope="module")
def fit(theo):
    return bn.fit(zoo.model, theo, chains=2, warmup=150, samples=100, seed=4)


def test_prior_predictive_groups_and_prior_draws(theo):
    idata = bn.sample_prior_predictive(zoo.model, theo, draws=2000, seed=0)
    assert {"prior", "prior_predictive", "observed_data", "constant_data"} <= set(idata.groups())
    assert idata.prior_predictive["DV"].dims == ("chain", "draw", "obs")
    assert idata.prior_predictive["DV"].shape == (1, 2000, 132)
    assert idata.prior["CL"].dims == ("chain", "draw", "ID")
    # the prior of tvcl is LogNormal(log 3, 1): median 3, log-SD 1
    log_cl = np.log(idata.prior["tvcl"].values.ravel())
    assert abs(np.median(log_cl) - np.log(3.0)) < 0.12  # 4 SE of the median
    assert abs(np.std(log_cl) - 1.0) < 0.07


def test_posterior_predictive_replicates_fitted_subjects(theo, fit):
    idata = bn.sample_posterior_predictive(zoo.model, theo, fit, seed=1)
    pp = idata.posterior_predictive["DV"]
    assert pp.dims == ("chain", "draw", "obs") and pp.shape == (2, 100, 132)
    # replicate = IPRED of the same draw + N(0, add_sd): check the residual SD
    resid = pp.values - idata.posterior["IPRED"].values
    np.testing.assert_allclose(resid.std(), float(idata.posterior["add_sd"].mean()), rtol=0.05)


def test_simulate_fitted_etas_reproduce_posterior_ipred(theo, fit):
    sim = bn.simulate(zoo.model, theo, fit, etas="fitted", seed=2).predictions
    assert sim["IPRED"].shape == (1, 200, 132)
    np.testing.assert_allclose(
        sim["IPRED"].values[0],
        fit.posterior["IPRED"].values.reshape(200, 132),
        rtol=1e-10,
        atol=1e-12,  # pre-dose values are 0 up to rounding
    )
    new = bn.simulate(zoo.model, theo, fit, etas="new", seed=2).predictions
    assert not np.allclose(new["IPRED"].values[0], sim["IPRED"].values[0])


def test_simulate_new_regimen_for_fitted_subjects(fit):
    """Subjects 1 and 2, seven once-daily doses, sampled at trough and peak on day 7."""
    rows = []
    for i in (2, 1):
        rows.append(dict(ID=i, TIME=0.0, AMT=320.0, EVID=1, CMT=1, DV=0.0, II=24, ADDL=6))
        rows += [dict(ID=i, TIME=t, AMT=0.0, EVID=0, CMT=2, DV=0.0) for t in (144.0, 146.0)]
    design = pd.DataFrame(rows)
    sim = bn.simulate(zoo.model, design, fit, etas="fitted", n_draws=50, seed=0).predictions
    assert sim["DV"].shape == (1, 50, 4)
    np.testing.assert_array_equal(sim["ID"].values, [2, 1])
    # accumulation: the day-7 peak exceeds the single-dose peak of the same subject
    single = fit.posterior["IPRED"].values.max()
    assert sim["IPRED"].values.max() > 0.5 * single
    cl = sim["CL"].values[0]
    post_cl = fit.posterior["CL"].sel(ID=[2, 1]).values.reshape(-1, 2)
    assert np.isin(cl[:, 0], post_cl[:, 0]).all()


def test_simulate_errors(theo, fit):
    with pytest.raises(bn.ModelError, match="needs a fit"):
        bn.simulate(zoo.model, theo, {"tvcl": 1.0}, etas="fitted")
    design = pd.DataFrame(
        [
            dict(ID=99, TIME=0.0, AMT=100.0, EVID=1, CMT=1, DV=0.0),
            dict(ID=99, TIME=1.0, AMT=0.0, EVID=0, CMT=2, DV=0.0),
        ]
    )
    with pytest.raises(bn.ModelError, match="IDs \\[99\\] were not fitted"):
        bn.simulate(zoo.model, design, fit, etas="fitted")
    with pytest.raises(bn.ModelError, match="'new' or 'fitted'"):
        bn.simulate(zoo.model, theo, fit, etas="typical")
