"""Simulated datasets from a design, and simulation-based calibration (SBC)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from numpyro.infer import Predictive

from .._errors import ModelError
from ..data._dataset import Dataset
from ..diagnostics._summary import convergence
from ..infer._batch import fit_batch, replace_dv
from ..infer._fit import as_dataset
from ..infer._predictive import _known_params, _raise_on_solver_failure
from ..population._model import Model

__all__ = ["SBCResult", "sbc", "simulate_datasets"]


def simulate_datasets(
    model: Model,
    design: Any,
    n_datasets: int,
    *,
    truth: str | Mapping[str, Any] = "prior",
    seed: int = 0,
) -> tuple[list[Dataset], dict[str, np.ndarray]]:
    """Simulate ``n_datasets`` trials of a design (its DV values are replaced).

    Parameters
    ----------
    model : Model
        The model that simulates (subjects get new ETAs from N(0, OMEGA), residual error
        is drawn from the model's error model).
    design : Dataset, pandas.DataFrame or CSV path
        Subjects, doses, observation times and covariates of one trial.
    n_datasets : int
    truth : "prior" or mapping, default "prior"
        ``"prior"``: each dataset draws its population parameters from the priors (SBC).
        A mapping: fixed population parameters for every dataset (a simulation-estimation
        study), as :func:`bayes_nlme.simulate` takes them.
    seed : int, default 0

    Returns
    -------
    datasets : list of Dataset
    truth : dict of str to ndarray, shape (n_datasets, ...)
        The population parameters each dataset was simulated with.

    Raises
    ------
    ModelError
        With censored (BLQ) observations in the design (not supported yet), or missing
        parameters in ``truth``.
    ODESolveError
        If the ODE solve fails for a simulated subject (names the subjects).
    """
    ds = as_dataset(design)
    if ds.obs_cens is not None and np.any(ds.obs_cens[ds.obs_mask]):
        raise ModelError(
            "simulate_datasets does not simulate censoring (BLQ rows, CENS=1) yet; give a "
            "design without CENS=1 rows."
        )
    mdata = model.model_data(ds)
    if isinstance(truth, str):
        if truth != "prior":
            raise ModelError(f"truth must be 'prior' or a dict of parameters; got {truth!r}.")
        pred = Predictive(model.numpyro_model, num_samples=n_datasets)
    elif isinstance(truth, Mapping):
        known = _known_params(model, truth)
        pred = Predictive(
            model.numpyro_model,
            posterior_samples={k: np.repeat(v, n_datasets, axis=0) for k, v in known.items()},
        )
    else:
        raise ModelError("truth must be 'prior' or a dict of population parameters.")
    sim = {k: np.asarray(v) for k, v in pred(jax.random.PRNGKey(seed), mdata).items()}
    if isinstance(truth, Mapping):  # Predictive returns only the sites it drew
        sim = {**{k: np.repeat(v, n_datasets, axis=0) for k, v in known.items()}, **sim}
    _raise_on_solver_failure(model, ds, sim)
    dv = sim[model.output_name()]
    datasets = [replace_dv(ds, dv[i]) for i in range(n_datasets)]
    values = {}
    for name in model.population_names():
        if name == "omega_corr" and "omega_corr_chol" in sim:
            chol = sim["omega_corr_chol"]
            values[name] = chol @ np.swapaxes(chol, -1, -2)
        elif name in sim:
            values[name] = sim[name]
    return datasets, values


@dataclasses.dataclass
class SBCResult:
    """Outcome of :func:`sbc`.

    Attributes
    ----------
    ranks : dict of str to ndarray of int, shape (n_datasets,)
        Rank of the true value among ``n_ranks`` thinned posterior draws (0 ... n_ranks).
    n_ranks : int
        Posterior draws ranked per dataset (ranks are uniform on 0 ... n_ranks when the
        model is calibrated).
    pvalues : dict of str to float
        Chi-square test of uniform ranks per parameter (``bins`` bins).
    alpha : float
        Family-wise level; a parameter fails when its p-value is below
        ``alpha / n_parameters`` (Bonferroni).
    truth : dict of str to ndarray
        The simulated population parameters.
    fits : list of arviz.InferenceData, or None
        The fits, when ``keep_fits`` was set.
    bins : int
        Bins of the chi-square test.
    divergences : ndarray of int, shape (n_datasets,)
        Divergent transitions of each fit.
    max_rhat : ndarray, shape (n_datasets,)
        Largest R-hat over the ranked parameters (NaN with one chain).
    """

    ranks: dict
    n_ranks: int
    pvalues: dict
    alpha: float
    bins: int
    truth: dict
    divergences: np.ndarray
    max_rhat: np.ndarray
    fits: list | None = None

    @property
    def failed(self) -> list[str]:
        """Parameters whose ranks are not uniform at the Bonferroni-corrected level."""
        cut = self.alpha / max(len(self.pvalues), 1)
        return [k for k, p in self.pvalues.items() if p < cut]

    @property
    def passed(self) -> bool:
        """True when no parameter fails the uniformity test."""
        return not self.failed

    def table(self):
        """A pandas DataFrame: parameter, p-value, pass, mean and SD of the scaled ranks
        (uniform: 0.5 and 0.289)."""
        import pandas as pd

        cut = self.alpha / max(len(self.pvalues), 1)
        rows = []
        for k, r in self.ranks.items():
            u = r / self.n_ranks
            rows.append(
                dict(
                    parameter=k,
                    pvalue=self.pvalues[k],
                    passed=self.pvalues[k] >= cut,
                    mean_rank=float(u.mean()),
                    sd_rank=float(u.std()),
                )
            )
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        status = "passed" if self.passed else f"FAILED for {self.failed}"
        return (
            f"SBCResult({len(next(iter(self.ranks.values())))} datasets, {self.n_ranks} "
            f"ranked draws, uniformity {status} at alpha={self.alpha})"
        )


def _uniformity_pvalue(ranks: np.ndarray, n_ranks: int, bins: int) -> float:
    """Chi-square test that ``ranks`` are uniform on 0 ... n_ranks, in ``bins`` bins whose
    expected counts follow the exact number of rank values per bin."""
    from scipy import stats

    values = np.arange(n_ranks + 1)
    which = values * bins // (n_ranks + 1)
    expected = np.bincount(which, minlength=bins) / (n_ranks + 1) * ranks.size
    observed = np.bincount(np.asarray(ranks) * bins // (n_ranks + 1), minlength=bins)
    return float(stats.chisquare(observed, expected).pvalue)


def sbc(
    model: Model,
    design: Any,
    n_datasets: int = 100,
    *,
    simulator: Model | None = None,
    n_ranks: int = 99,
    bins: int | None = None,
    alpha: float = 0.05,
    chains: int = 1,
    warmup: int = 500,
    samples: int = 500,
    seed: int = 0,
    keep_fits: bool = False,
    **fit_kwargs,
) -> SBCResult:
    """Simulation-based calibration of a model and its priors (Talts et al. 2018).

    Draws ``n_datasets`` parameter sets from the priors, simulates a dataset of ``design``
    with each, fits every dataset with :func:`bayes_nlme.fit_batch`, and ranks each true
    population parameter among ``n_ranks`` evenly thinned posterior draws. For a correct
    model, sampler and prior the ranks are uniform; a U shape means posteriors too narrow,
    a hump too wide, a slope a bias.

    Parameters
    ----------
    model : Model
        The model that is fitted.
    design : Dataset, pandas.DataFrame or CSV path
        The trial design (subjects, doses, times, covariates; DV ignored).
    n_datasets : int, default 100
    simulator : Model, optional
        The model that simulates (default ``model``). A different one tests that SBC
        detects a mismatch.
    n_ranks : int, default 99
        Posterior draws ranked per dataset (thinning reduces autocorrelation, which
        would inflate the test); at most ``chains * samples``.
    bins : int, optional
        Histogram bins of the chi-square test; default ``min(20, n_datasets // 5)`` (at
        least 5 expected per bin).
    alpha : float, default 0.05
        Family-wise level of the uniformity test over all parameters (Bonferroni).
    chains, warmup, samples, seed
        Sampler settings (``seed`` also seeds the simulation).
    keep_fits : bool, default False
        Keep every InferenceData in the result.
    **fit_kwargs
        Passed to :func:`bayes_nlme.fit_batch` (``devices``, ``batch_size``, ...).

    Returns
    -------
    SBCResult
        ``.passed``, ``.pvalues``, ``.ranks``, ``.table()``; plot with
        :func:`bayes_nlme.plots.plot_sbc`.

    Raises
    ------
    ModelError
        If ``n_ranks`` exceeds the draws, or the design has censored rows.

    References
    ----------
    Talts S, Betancourt M, Simpson D, Vehtari A, Gelman A (2018). Validating Bayesian
    inference algorithms with simulation-based calibration. arXiv:1804.06788.
    Säilynoja T, Bürkner P-C, Vehtari A (2022). Graphical test for discrete uniformity and
    its applications in goodness-of-fit evaluation and multiple sample comparison.
    Statistics and Computing 32:32 (the ECDF-difference plot).

    Examples
    --------
    >>> from bayes_nlme.model_zoo.theophylline import model, data
    >>> res = bn.sbc(model, data(), n_datasets=100, warmup=300, samples=300)  # doctest: +SKIP
    >>> res.passed  # doctest: +SKIP
    True
    """
    total = chains * samples
    if n_ranks > total:
        raise ModelError(f"n_ranks={n_ranks} exceeds the {total} posterior draws per fit.")
    if bins is None:
        bins = int(max(2, min(20, n_datasets // 5)))
    datasets, truth = simulate_datasets(simulator or model, design, n_datasets, seed=seed)
    names = [
        n
        for n in model.population_names()
        if n in truth and np.ndim(truth[n]) == 1 and n not in model.fixed_values()
    ]
    keep = np.round(np.linspace(0, total - 1, n_ranks)).astype(int)
    ranks = {n: np.zeros(n_datasets, int) for n in names}
    div = np.zeros(n_datasets, int)
    rhat = np.zeros(n_datasets)
    fits = [] if keep_fits else None

    def collect(i, idata):
        for n in names:
            draws = np.asarray(idata.posterior[n]).reshape(-1)[keep]
            ranks[n][i] = int(np.sum(draws < truth[n][i]))
        div[i] = int(np.asarray(idata.sample_stats["diverging"]).sum())
        rhat[i] = convergence(idata, names)["max_r_hat"] if chains > 1 else np.nan

    out = fit_batch(
        model,
        datasets,
        chains=chains,
        warmup=warmup,
        samples=samples,
        seed=seed,
        on_result=collect,
        **fit_kwargs,
    )
    if keep_fits:
        fits = out
    pvalues = {n: _uniformity_pvalue(ranks[n], n_ranks, bins) for n in names}
    return SBCResult(ranks, n_ranks, pvalues, alpha, bins, truth, div, rhat, fits)
