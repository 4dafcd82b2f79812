"""Model comparison by approximate leave-one-out cross-validation (PSIS-LOO, via ArviZ).

Two predictive targets:

- ``level="obs"`` — leave one *observation* out: the expected log predictive density of a new
  observation of an already-observed subject (the fit's pointwise ``log_likelihood``, as
  :func:`arviz.loo` uses it).
- ``level="subject"`` — leave one *subject* out: the log-likelihood terms of each subject are
  summed, ``log p(y_i | θ, η_i) = Σ_j log p(y_ij | θ, η_i)``, and PSIS-LOO is run over
  subjects. Leaving out all of subject ``i``'s data leaves ``η_i`` with its population
  distribution, so this estimates the predictive density of a *new patient's* profile, the
  target that matters for dosing new patients (Vehtari et al. 2017, sec. 4; Merkle, Furr &
  Rabe-Hesketh 2019).

Pareto k diagnostics (Vehtari et al. 2017, 2024): ``k <= 0.7`` the importance-sampling
estimate is reliable; ``k > 0.7`` it is not — the warning names those observations or
subjects. With the subject-level target and the *conditional* likelihood above, high k values
are the rule, not the exception: the full-data posterior of ``η_i`` is much narrower than its
leave-subject-out distribution (the population distribution), a poor importance-sampling
proposal, and the more so the richer each subject's data (Theophylline, 11 samples per
subject: k > 0.7 for 10-12 of the 12 subjects). Passing ``model`` and ``data`` to :func:`loo`
uses the *marginal* likelihood instead, ``log m_i(θ) = log ∫ p(y_i | θ, η) N(η; 0, Ω) dη``
by Laplace's method (:func:`bayes_nlme.diagnostics.laplace_ofv`), so that only the population
parameters are importance-sampled (Merkle et al. 2019). On Theophylline (4 x 1000 draws,
1000 used) k < 0.65 for 11 of the 12 subjects (max 0.72), against k > 0.8 for all 12 with the
conditional likelihood, whose elpd (-164.4) is also far more optimistic than the marginal one
(-189.3). It costs one Laplace evaluation of all subjects per posterior draw.

References
----------
Vehtari A., Gelman A., Gabry J. (2017). Practical Bayesian model evaluation using
leave-one-out cross-validation and WAIC. Stat Comput 27:1413-1432.

Vehtari A., Simpson D., Gelman A., Yao Y., Gabry J. (2024). Pareto smoothed importance
sampling. J Mach Learn Res 25(72):1-58.

Merkle E.C., Furr D., Rabe-Hesketh S. (2019). Bayesian comparison of latent variable models:
conditional versus marginal likelihoods. Psychometrika 84(3):802-829.

Yao Y., Vehtari A., Simpson D., Gelman A. (2018). Using stacking to average Bayesian
predictive distributions. Bayesian Anal 13(3):917-1007 (``az.compare`` weights).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az
    import xarray as xr

__all__ = ["loo", "compare", "subject_log_likelihood", "subject_marginal_log_likelihood"]

#: Pareto k above which the PSIS estimate of a pointwise elpd is unreliable.
K_THRESHOLD = 0.7

_LEVELS = ("obs", "subject")


def _var_name(idata, var_name):
    if "log_likelihood" not in idata.groups():
        raise ValueError("The fit has no log_likelihood group (bayes_nlme.fit records one)")
    names = list(idata.log_likelihood.data_vars)
    if var_name is None:
        if len(names) != 1:
            raise ValueError(f"log_likelihood has several variables {names}; pass var_name")
        return names[0]
    if var_name not in names:
        raise ValueError(f"log_likelihood has no variable {var_name!r}; it has {names}")
    return var_name


def subject_log_likelihood(idata, var_name: str | None = None):
    """Per-subject log-likelihood: the sum of each subject's pointwise log-likelihood terms.

    Parameters
    ----------
    idata : arviz.InferenceData
        A fit with ``log_likelihood[var_name]`` (chain, draw, obs) and
        ``constant_data["subject"]`` (the subject ID of each observation).
    var_name : str, optional
        The log-likelihood variable; default the only one (``"DV"``).

    Returns
    -------
    xarray.DataArray
        Dims (chain, draw, ID); ``ID`` in the order of ``posterior["ID"]`` (the dataset's
        order) when the fit has it, else in order of first appearance.
    """
    var = _var_name(idata, var_name)
    ll = idata.log_likelihood[var]
    if "constant_data" not in idata.groups() or "subject" not in idata.constant_data:
        raise ValueError("constant_data['subject'] (subject ID of each observation) is needed")
    subject = np.asarray(idata.constant_data["subject"].values)
    obs_dim = [d for d in ll.dims if d not in ("chain", "draw")]
    if len(obs_dim) != 1 or ll.sizes[obs_dim[0]] != subject.size:
        raise ValueError(
            f"log_likelihood[{var!r}] must have one observation dim of length {subject.size}"
        )
    if "posterior" in idata.groups() and "ID" in idata.posterior.coords:
        ids = np.asarray(idata.posterior["ID"].values)
    else:
        _, first = np.unique(subject, return_index=True)
        ids = subject[np.sort(first)]
    values = ll.transpose("chain", "draw", obs_dim[0]).values
    summed = np.stack([values[..., subject == i].sum(axis=-1) for i in ids], axis=-1)
    return xr.DataArray(
        summed,
        dims=("chain", "draw", "ID"),
        coords={"chain": ll["chain"].values, "draw": ll["draw"].values, "ID": ids},
        name=var,
    )


def subject_marginal_log_likelihood(model, data, idata, *, n_draws: int | None = 1000):
    """Per-subject marginal log-likelihood ``log m_i(θ_s)``, ETAs integrated out by Laplace.

    ``m_i(θ) = ∫ p(y_i | θ, η) N(η; 0, Ω) dη`` at each (thinned) posterior draw ``θ_s`` of the
    population parameters, from :func:`bayes_nlme.diagnostics.laplace_ofv`
    (``-ofv_subject / 2`` with ``constant=True``). Laplace's method is exact for a Gaussian
    integrand; its error shrinks like ``1/n_i``.

    Parameters
    ----------
    model : Model
        The fitted model.
    data : Dataset, DataFrame or path
        The fitted dataset.
    idata : arviz.InferenceData
        The fit.
    n_draws : int or None, default 1000
        Posterior draws used, evenly thinned within each chain (all chains kept); None: all.

    Returns
    -------
    xarray.DataArray
        Dims (chain, draw, ID), ``draw`` holding the kept draw numbers.

    Warns
    -----
    RuntimeWarning
        When the ETA mode search did not converge for some draws and subjects (counted).
    """
    from ..infer._fit import as_dataset
    from ._ofv import laplace_ofv  # ETA integration by Laplace's method

    ds = as_dataset(data)
    post = idata.posterior
    if "ID" in post.coords and not np.array_equal(np.asarray(post["ID"].values), ds.ids):
        raise ValueError("data has other subjects (IDs) than the fit")
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    per_chain = n_draw if n_draws is None else max(1, min(n_draw, n_draws // n_chain))
    keep = np.unique(np.linspace(0, n_draw - 1, per_chain).round().astype(int))
    names = [n for n in model.population_names() if n in post]
    values = {n: post[n].isel(draw=keep).values for n in names}
    out = np.empty((n_chain, keep.size, ds.n_id))
    n_bad = 0
    for c in range(n_chain):
        for d in range(keep.size):
            params = {n: v[c, d] for n, v in values.items()}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # counted below
                res = laplace_ofv(model, ds, params, constant=True)
            n_bad += int((~np.asarray(res.converged)).sum())
            out[c, d] = -0.5 * np.asarray(res.ofv_subject)
    if n_bad:
        warnings.warn(
            f"The ETA mode search did not converge for {n_bad} (draw, subject) pairs; their "
            "marginal likelihoods are unreliable.",
            RuntimeWarning,
            stacklevel=2,
        )
    return xr.DataArray(
        out,
        dims=("chain", "draw", "ID"),
        coords={
            "chain": post["chain"].values,
            "draw": post["draw"].values[keep],
            "ID": np.asarray(ds.ids),
        },
    )


def _describe(idata, level, bad):
    """Readable labels of the flagged observations or subjects (at most 20)."""
    items = []
    for i in bad[:20]:
        if level == "subject":
            items.append(f"ID {i}")
        else:
            lab = f"obs {i}"
            if "constant_data" in idata.groups():
                cd = idata.constant_data
                parts = []
                if "subject" in cd:
                    parts.append(f"ID {np.asarray(cd['subject'].values)[i]}")
                if "TIME" in cd:
                    parts.append(f"TIME {float(np.asarray(cd['TIME'].values)[i]):g}")
                if parts:
                    lab += f" ({', '.join(parts)})"
            items.append(lab)
    more = f" and {len(bad) - 20} more" if len(bad) > 20 else ""
    return ", ".join(items) + more


def loo(
    idata,
    *,
    level: str = "obs",
    pointwise: bool = False,
    var_name: str | None = None,
    label: str | None = None,
    model=None,
    data=None,
    n_draws: int | None = 1000,
):
    """PSIS-LOO expected log predictive density of a fit, per observation or per subject.

    Parameters
    ----------
    idata : arviz.InferenceData
        A fit from :func:`bayes_nlme.fit` (``log_likelihood``, ``posterior``,
        ``constant_data["subject"]``).
    level : {"obs", "subject"}, default "obs"
        ``"obs"``: leave one observation out — identical to ``arviz.loo(idata)``.
        ``"subject"``: leave one subject out — the log-likelihood summed over each subject's
        observations (:func:`subject_log_likelihood`, dim ``ID``), the predictive target for
        new patients (module docstring).
    pointwise : bool, default False
        Return the pointwise ``loo_i`` and ``pareto_k`` too (dim ``obs`` or ``ID``).
    var_name : str, optional
        The log-likelihood variable; default the only one (``"DV"``).
    label : str, optional
        A name for the fit, used in warnings (e.g. by :func:`compare`).
    model, data : Model and Dataset, optional
        Only with ``level="subject"``: use each subject's *marginal* likelihood, ETAs
        integrated out by Laplace's method (:func:`subject_marginal_log_likelihood`), instead
        of the sum of the conditional pointwise terms. Same predictive target (a new subject's
        profile), far more reliable PSIS weights (module docstring); one Laplace evaluation per
        draw (about 50 ms for Theophylline on one CPU core).
    n_draws : int or None, default 1000
        With ``model`` and ``data``: posterior draws used (thinned within chains).

    Returns
    -------
    arviz.ELPDData
        ``elpd_loo``, ``se``, ``p_loo``, ``n_samples``, ``n_data_points`` (observations or
        subjects), ``warning``, ``scale`` (``"log"``), ``good_k`` and, with ``pointwise``,
        ``loo_i`` and ``pareto_k``. The relative efficiency of the draws is ArviZ's (the mean
        ESS of all posterior variables over the number of draws).

    Warns
    -----
    UserWarning
        When any Pareto k exceeds 0.7, naming how many and which observations (index, ID and
        TIME) or subjects (ID). ArviZ's own, unspecific Pareto warning is suppressed.

    References
    ----------
    Vehtari A., Gelman A., Gabry J. (2017). Stat Comput 27:1413-1432.

    Examples
    --------
    >>> res = bn.diagnostics.loo(idata, level="subject")  # doctest: +SKIP
    >>> res["elpd_loo"], res["se"], res["n_data_points"]  # doctest: +SKIP
    """
    if level not in _LEVELS:
        raise ValueError(f"level must be 'obs' or 'subject'; got {level!r}")
    var = _var_name(idata, var_name)
    if (model is None) != (data is None):
        raise ValueError("pass both model and data (marginal subject-level LOO) or neither")
    if model is not None and level != "subject":
        raise ValueError("model and data are only used with level='subject'")
    if level == "subject":
        if model is not None:
            ll = subject_marginal_log_likelihood(model, data, idata, n_draws=n_draws)
        else:
            ll = subject_log_likelihood(idata, var)
        groups = {"log_likelihood": xr.Dataset({var: ll})}
        if "posterior" in idata.groups():
            groups["posterior"] = idata.posterior.sel(draw=ll["draw"].values)
        target = az.InferenceData(**groups)
    else:
        target = idata
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
        warnings.simplefilter("ignore", FutureWarning)
        res = az.loo(target, pointwise=True, var_name=var)
    k = np.asarray(res["pareto_k"].values).ravel()
    bad_pos = np.nonzero(k > K_THRESHOLD)[0]
    if bad_pos.size:
        if level == "subject":
            ids = np.asarray(res["pareto_k"]["ID"].values)
            what, flagged = "subjects", [ids[i] for i in bad_pos]
        else:
            what, flagged = "observations", bad_pos.tolist()
        who = f"{label}: " if label else ""
        kind = f"{level} level" + (", marginal" if model is not None else "")
        hint = (
            " For subject-level LOO, the marginal likelihood (pass model= and data=) usually "
            "gives reliable k."
            if level == "subject" and model is None
            else ""
        )
        warnings.warn(
            f"{who}PSIS-LOO ({kind}): Pareto k > {K_THRESHOLD} for {bad_pos.size} of "
            f"{k.size} {what}: {_describe(idata, level, flagged)} (max k = {k.max():.2f}). "
            "Their elpd estimates are unreliable; consider exact refits without them or "
            f"K-fold cross-validation.{hint}",
            UserWarning,
            stacklevel=2,
        )
    if not pointwise:
        short = res.drop(["loo_i", "pareto_k"])
        res = az.ELPDData(data=list(short.values), index=list(short.index))
    return res


def compare(
    fits: Mapping,
    *,
    level: str = "obs",
    method: str = "stacking",
    var_name: str | None = None,
):
    """Rank fits of the same data by PSIS-LOO (``arviz.compare``) at the chosen level.

    Parameters
    ----------
    fits : dict of str to arviz.InferenceData or arviz.ELPDData
        Fits of different models to the same dataset (same observations, same subjects), or
        their precomputed :func:`loo` results with ``pointwise=True`` (e.g. marginal
        subject-level ones); ``level`` is then ignored for those.
    level : {"obs", "subject"}, default "obs"
        Leave-one-observation-out or leave-one-subject-out (see :func:`loo`). Compare new-patient
        predictions with ``"subject"``.
    method : {"stacking", "BB-pseudo-BMA", "pseudo-BMA"}, default "stacking"
        How ``arviz.compare`` computes the model weights (Yao et al. 2018).
    var_name : str, optional
        The log-likelihood variable; default the only one.

    Returns
    -------
    pandas.DataFrame
        One row per model, best first: ``rank``, ``elpd_loo``, ``p_loo``, ``elpd_diff``
        (difference from the best), ``weight``, ``se``, ``dse`` (standard error of the
        difference), ``warning``, ``scale``. Differences below about 4, or within 2 ``dse``,
        do not distinguish the models (Sivula, Magnusson, Matamoros & Vehtari 2020, arXiv
        2008.10296).

    Raises
    ------
    ValueError
        Fewer than two fits, or fits of different data (DV values or subjects differ).

    Warns
    -----
    UserWarning
        Pareto k > 0.7 in any fit (see :func:`loo`), naming the fit.
    """
    if level not in _LEVELS:
        raise ValueError(f"level must be 'obs' or 'subject'; got {level!r}")
    if len(fits) < 2:
        raise ValueError("compare needs at least two fits")
    fitted = {k: v for k, v in fits.items() if not isinstance(v, az.ELPDData)}
    names = list(fitted)
    for name in names[1:]:
        _check_same_data(fitted[names[0]], fitted[name], names[0], name)
    elpds = {
        name: v
        if isinstance(v, az.ELPDData)
        else loo(v, level=level, pointwise=True, var_name=var_name, label=name)
        for name, v in fits.items()
    }
    sizes = {name: int(e["n_data_points"]) for name, e in elpds.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"The fits have different numbers of data points: {sizes}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message="The inplace keyword")
        return az.compare(elpds, method=method)


def _check_same_data(a, b, name_a, name_b):
    for group, var in (("observed_data", None), ("constant_data", "subject")):
        if group not in a.groups() or group not in b.groups():
            continue
        ga, gb = a[group], b[group]
        keys = [var] if var else sorted(set(ga.data_vars) & set(gb.data_vars))
        for k in keys:
            if k not in ga or k not in gb:
                continue
            va, vb = np.asarray(ga[k].values), np.asarray(gb[k].values)
            if va.shape != vb.shape or not np.array_equal(va, vb):
                raise ValueError(
                    f"Fits {name_a!r} and {name_b!r} are not of the same data ({group}[{k!r}] "
                    "differs); LOO comparisons need the same observations."
                )
