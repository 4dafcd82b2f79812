"""Visual predictive checks: VPC and prediction-corrected VPC (pcVPC).

A VPC compares percentiles of the observed data, per bin of time, with the distribution of the
same percentiles over datasets simulated from the model with the study design (same subjects'
doses, sampling times and covariates, NEW random effects, one posterior draw per replicate).
Under a correct model each observed percentile lies inside the simulated confidence interval
of that percentile in most bins.

:func:`vpc_stats` is the computation (pure NumPy, any data); :func:`plot_vpc` simulates from a
fit and draws it.

References
----------
Holford N. (2005). The visual predictive check — superiority to standard diagnostic
(Rorschach) plots. PAGE 14, abstract 738.

Bergstrand M., Hooker A.C., Wallin J.E., Karlsson M.O. (2011). Prediction-corrected visual
predictive checks for diagnosing nonlinear mixed-effects models. AAPS J 13(2):143-151.

Bergstrand M., Karlsson M.O. (2009). Handling data below the limit of quantification in mixed
effect models. AAPS J 11(2):371-380 (VPC of censored data: percentiles and fraction BLQ).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import xarray as xr

__all__ = ["vpc_stats", "plot_vpc", "bin_edges"]

#: "auto" binning: one bin per distinct time when there are at most this many distinct times.
AUTO_MAX_BINS = 10
#: "auto" binning otherwise: about this many observations per quantile bin (at most 10 bins).
AUTO_OBS_PER_BIN = 10


# --------------------------------------------------------------------------------------------
# binning
# --------------------------------------------------------------------------------------------


def _quantile_inner_edges(t: np.ndarray, n_bins: int) -> np.ndarray:
    """Inner edges splitting sorted ``t`` into ``n_bins`` groups of (nearly) equal counts.

    Each edge is the midpoint between the last time of one group and the first of the next;
    a cut that falls inside a run of tied times moves to the nearest change of time, so tied
    times always share a bin (and bins may be fewer than ``n_bins``).
    """
    ts = np.sort(t)
    n = ts.size
    gaps = np.nonzero(ts[1:] != ts[:-1])[0] + 1  # positions where a new distinct time starts
    if gaps.size == 0:
        return np.array([])
    cuts = np.round(np.arange(1, n_bins) * n / n_bins).astype(int)
    # a cut inside a run of tied times moves to the nearest boundary between distinct times
    cuts = np.unique(gaps[np.argmin(np.abs(gaps[None, :] - cuts[:, None]), axis=1)])
    return 0.5 * (ts[cuts - 1] + ts[cuts])


def bin_edges(time: Any, bins: Any = "auto") -> np.ndarray:
    """Bin edges (increasing, first = min(time), last = max(time) unless given) for a VPC.

    Parameters
    ----------
    time : array_like, shape (n,)
        Observation times (of one stratum).
    bins : "auto", int or array_like
        - int ``k``: ``k`` quantile bins (equal numbers of observations); the edges are midpoints
          between consecutive sorted times, moved to the nearest change of time when a cut
          falls among tied times (tied times share a bin; fewer than ``k`` bins may result).
        - array of edges: used as given (at least 2, strictly increasing). Bins are
          ``[e_i, e_i+1)``, the last one closed; observations outside are left out.
        - ``"auto"``: one bin per distinct time when there are at most
          :data:`AUTO_MAX_BINS` (10) distinct times (a nominal-time design), edges halfway
          between them; otherwise ``min(10, max(1, round(n / 10)))`` quantile bins (about 10
          observations per bin).

    Returns
    -------
    ndarray
        The edges, ``n_bins + 1`` values.
    """
    t = np.asarray(time, dtype=float)
    t = t[np.isfinite(t)]
    if isinstance(bins, str):
        if bins != "auto":
            raise ValueError(f"bins must be 'auto', an int or an array of edges; got {bins!r}")
        if t.size == 0:
            return np.array([0.0, 0.0])
        u = np.unique(t)
        if u.size <= AUTO_MAX_BINS:
            inner = 0.5 * (u[:-1] + u[1:])
        else:
            inner = _quantile_inner_edges(t, min(10, max(1, round(t.size / AUTO_OBS_PER_BIN))))
    elif np.ndim(bins) == 0:
        k = int(bins)
        if k < 1 or k != bins:
            raise ValueError(f"bins as a number must be a positive integer; got {bins!r}")
        if t.size == 0:
            return np.array([0.0, 0.0])
        inner = _quantile_inner_edges(t, k)
    else:
        edges = np.asarray(bins, dtype=float)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
            raise ValueError(
                "bins as edges must be a 1-D, strictly increasing array of >= 2 values"
            )
        return edges
    return np.concatenate([[t.min()], inner, [t.max()]])


def _assign(t: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index of each time for edges ``[e0, ..., eB]``: ``[e_i, e_i+1)``, last bin closed;
    -1 outside."""
    b = np.searchsorted(edges, t, side="right") - 1
    b = np.where(t == edges[-1], edges.size - 2, b)
    return np.where((t < edges[0]) | (t > edges[-1]) | ~np.isfinite(t), -1, b)


# --------------------------------------------------------------------------------------------
# percentiles
# --------------------------------------------------------------------------------------------


def _quantile_sorted(s: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Linear-interpolation quantiles (numpy's default, Hyndman & Fan type 7) of the last axis
    of an already sorted array: returns shape ``s.shape[:-1] + (len(p),)``."""
    n = s.shape[-1]
    h = (n - 1) * np.asarray(p, dtype=float)
    lo = np.floor(h).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    a, b = s[..., lo], s[..., hi]
    with np.errstate(invalid="ignore"):
        return np.where(h == lo, a, a + (h - lo) * (b - a))


def _censored_percentiles(y: np.ndarray, blq: np.ndarray, p: np.ndarray):
    """Percentiles of ``y`` (last axis) when the ``blq`` entries are only known to be low.

    BLQ values are placed below every quantified value (their true value is unknown) and a
    percentile is *censored* when its type-7 interpolation involves a BLQ value, i.e. when
    ``floor((n - 1) p) < n_BLQ``; censored percentiles are NaN.
    """
    z = np.where(blq, -np.inf, y)
    s = np.sort(z, axis=-1)
    q = _quantile_sorted(s, p)
    n = y.shape[-1]
    n_blq = blq.sum(axis=-1)[..., None]
    cens = np.floor((n - 1) * np.asarray(p)) < n_blq
    return np.where(cens, np.nan, q), cens


# --------------------------------------------------------------------------------------------
# vpc_stats
# --------------------------------------------------------------------------------------------


def vpc_stats(
    time: Any,
    dv: Any,
    sims: Any,
    *,
    bins: Any = "auto",
    pred: Any = None,
    pred_sims: Any = None,
    pi: tuple[float, ...] = (0.05, 0.5, 0.95),
    ci: float = 0.95,
    strata: Any = None,
    lloq: Any = None,
):
    r"""Binned observed and simulated percentiles for a (prediction-corrected) VPC.

    Parameters
    ----------
    time : array_like, shape (n,)
        Time of each observation (any independent variable: time after dose, TAD, ...).
    dv : array_like, shape (n,)
        Observed values.
    sims : array_like, shape (K, n)
        ``K`` simulated replicates of the same observations (same design, e.g.
        ``bn.simulate(model, data, idata, etas="new").predictions["DV"][0]``).
    bins : "auto", int or array_like, default "auto"
        Binning of ``time``, computed per stratum from the observed times (see
        :func:`bin_edges`): ``"auto"`` (one bin per distinct time if there are at most 10,
        else about 10 observations per quantile bin, at most 10 bins), an int (that many
        quantile — equal-count — bins) or an explicit array of edges (bins ``[e_i, e_i+1)``,
        last one closed; observations outside are not used).
    pred : array_like, shape (n,), optional
        Population predictions (PRED) of the observations. When given, the VPC is
        prediction-corrected (Bergstrand et al. 2011, eq. 1):
        :math:`pcY_{ij} = Y_{ij} \cdot \widetilde{PRED}_{bin} / PRED_{ij}` with
        :math:`\widetilde{PRED}_{bin}` the median PRED of the bin's observations, applied to
        the observations and to every simulated replicate. Observations with PRED <= 0 or not
        finite (e.g. pre-dose samples) are left out of the pcVPC (counted in
        ``attrs["n_excluded"]``). The variability correction of the same paper (pvcVPC) is NOT
        applied, and the correction is the multiplicative one (for DV on the natural scale,
        not for log-transformed DV).
    pred_sims : array_like, shape (n,) or (K, n), optional
        PRED of the simulated observations; default ``pred`` (the simulations replicate the
        observed design, so their PRED are the same). Give a (K, n) array when the replicates
        differ in design (e.g. resampled covariates).
    pi : tuple of float, default (0.05, 0.5, 0.95)
        Percentiles (as fractions) summarised in each bin.
    ci : float, default 0.95
        Coverage of the equal-tailed interval of each simulated percentile over replicates.
    strata : array_like, shape (n,), optional
        Stratum label of each observation; bins are computed and statistics reported per
        stratum (in sorted order of the labels).
    lloq : float or array_like of shape (n,), optional
        Lower limit of quantification. Observations with ``dv < lloq`` are below it (BLQ; their
        recorded DV is not used) and counted in the observed fraction BLQ per bin; observed
        percentiles that depend on a BLQ value — ``floor((m - 1) p) < m_BLQ`` among the
        ``m`` observations of the bin, BLQ values ranked lowest — are censored (NaN,
        ``obs_censored`` True). Simulated percentiles are computed from the simulated values
        themselves (a simulated percentile below LLOQ means the model predicts that percentile
        to be censored); the simulated fraction BLQ is summarised like the percentiles
        (Bergstrand & Karlsson 2009). BLQ status is decided on the uncorrected scale, also in
        a pcVPC.

    Returns
    -------
    xarray.Dataset
        Dimensions ``stratum`` (labels as str; ``"all"`` without strata), ``bin`` (0-based;
        strata with fewer bins are NaN-padded, ``n_obs`` 0), ``pi`` (the percentiles) and
        ``obs`` (the input observations). Variables:

        - ``lower``, ``upper`` (stratum, bin): bin edges;
        - ``time`` (stratum, bin): bin centre, the median time of the bin's observations;
        - ``n_obs`` (stratum, bin): observations in the bin;
        - ``observed`` (stratum, bin, pi): observed percentiles (prediction-corrected with
          ``pred``; NaN when censored or the bin is empty);
        - ``obs_censored`` (stratum, bin, pi): observed percentile censored by the LLOQ;
        - ``sim_median``, ``sim_lower``, ``sim_upper`` (stratum, bin, pi): median and ``ci``
          interval over the ``K`` replicates of each simulated percentile;
        - with ``lloq``: ``obs_blq`` (stratum, bin), the observed fraction BLQ, and
          ``sim_blq_median``, ``sim_blq_lower``, ``sim_blq_upper``, its simulated median and
          interval;
        - with ``pred``: ``pred_bin`` (stratum, bin), the median PRED of the bin;
        - per observation: ``y`` (obs; DV on the VPC scale, i.e. prediction-corrected with
          ``pred``; NaN when excluded), ``bin_index`` (obs; -1 when not in any bin) and
          ``stratum_index`` (obs).

        ``attrs``: ``pc`` (bool), ``ci``, ``n_sim`` (K), ``n_excluded`` (observations left out
        of the pcVPC), ``lloq`` (bool: LLOQ given).

    Examples
    --------
    >>> import numpy as np
    >>> t = np.array([1.0, 1.0, 2.0, 2.0])
    >>> st = vpc_stats(t, [1.0, 3.0, 2.0, 4.0], np.ones((5, 4)), bins="auto")
    >>> st["observed"].sel(pi=0.5).values.ravel().tolist()
    [2.0, 3.0]
    """
    t = np.asarray(time, dtype=float).ravel()
    y = np.asarray(dv, dtype=float).ravel()
    ys = np.asarray(sims, dtype=float)
    n = t.size
    if y.size != n:
        raise ValueError(f"time has {n} values but dv has {y.size}")
    if ys.ndim == 1:
        ys = ys[None]
    if ys.ndim != 2 or ys.shape[1] != n:
        raise ValueError(f"sims must have shape (K, {n}); got {np.shape(sims)}")
    k_sim = ys.shape[0]
    p = np.asarray(pi, dtype=float)
    if p.ndim != 1 or np.any((p < 0) | (p > 1)):
        raise ValueError(f"pi must be fractions in [0, 1]; got {pi!r}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1); got {ci!r}")

    keep = np.isfinite(t) & np.isfinite(y)
    pc = pred is not None
    if pc:
        pr = np.broadcast_to(np.asarray(pred, dtype=float).ravel(), (n,))
        prs = pr if pred_sims is None else np.asarray(pred_sims, dtype=float)
        if prs.shape not in ((n,), (k_sim, n)):
            raise ValueError(f"pred_sims must have shape ({n},) or ({k_sim}, {n})")
        prs2 = np.broadcast_to(prs, (k_sim, n))
        ok = np.isfinite(pr) & (pr > 0) & np.all(np.isfinite(prs2) & (prs2 > 0), axis=0)
        n_excluded = int(np.sum(keep & ~ok))
        keep &= ok
    else:
        n_excluded = 0
    if lloq is not None:
        lq = np.broadcast_to(np.asarray(lloq, dtype=float).ravel(), (n,))
        blq_obs = y < lq
        blq_sim = ys < lq
    if strata is None:
        s_code = np.zeros(n, dtype=int)
        labels = ["all"]
    else:
        s_arr = np.asarray(strata).ravel()
        if s_arr.size != n:
            raise ValueError(f"strata has {s_arr.size} values for {n} observations")
        levels, s_code = np.unique(s_arr, return_inverse=True)
        labels = [str(v) for v in levels]

    per_stratum = []
    bin_index = np.full(n, -1)
    y_scaled = np.full(n, np.nan)
    for s in range(len(labels)):
        idx = np.nonzero((s_code == s) & keep)[0]
        edges = bin_edges(t[idx], bins)
        b = _assign(t[idx], edges)
        bin_index[idx] = b
        rows = []
        for j in range(edges.size - 1):
            m = idx[b == j]
            row = {"lower": edges[j], "upper": edges[j + 1], "n_obs": m.size}
            if m.size == 0:
                rows.append(row)
                continue
            yo, yss = y[m], ys[:, m]
            if pc:
                pb = np.median(pr[m])
                pbs = np.median(prs2[:, m], axis=1, keepdims=True)
                yo = yo * pb / pr[m]
                yss = yss * pbs / prs2[:, m]
                row["pred_bin"] = pb
            y_scaled[m] = yo
            row["time"] = np.median(t[m])
            if lloq is not None:
                row["observed"], row["obs_censored"] = _censored_percentiles(yo, blq_obs[m], p)
                frac = blq_sim[:, m].mean(axis=1)
                row["obs_blq"] = blq_obs[m].mean()
                row["blq_sims"] = np.quantile(frac, [(1 - ci) / 2, 0.5, (1 + ci) / 2])
            else:
                row["observed"] = _quantile_sorted(np.sort(yo), p)
                row["obs_censored"] = np.zeros(p.size, bool)
            q_sim = _quantile_sorted(np.sort(yss, axis=1), p)  # (K, P)
            row["sims"] = np.quantile(q_sim, [(1 - ci) / 2, 0.5, (1 + ci) / 2], axis=0)
            rows.append(row)
        per_stratum.append(rows)

    return _to_dataset(
        per_stratum,
        labels,
        dict(p=p, pc=pc, has_lloq=lloq is not None, ci=ci, k_sim=k_sim, n_excluded=n_excluded),
        y_scaled,
        bin_index,
        s_code,
    )


def _to_dataset(per_stratum, labels, info, y, b, s_code):
    p, pc, has_lloq = info["p"], info["pc"], info["has_lloq"]
    n_s, n_b, n_p = len(labels), max(len(r) for r in per_stratum), p.size
    sb = np.full((n_s, n_b), np.nan)
    sbp = np.full((n_s, n_b, n_p), np.nan)
    out = {
        k: sb.copy()
        for k in ("lower", "upper", "time", "obs_blq", "sim_blq_lower")
        + ("sim_blq_median", "sim_blq_upper", "pred_bin")
    }
    out.update({k: sbp.copy() for k in ("observed", "sim_lower", "sim_median", "sim_upper")})
    out["n_obs"] = np.zeros((n_s, n_b), int)
    out["obs_censored"] = np.zeros((n_s, n_b, n_p), bool)
    for s, rows in enumerate(per_stratum):
        for j, row in enumerate(rows):
            for k in ("lower", "upper", "n_obs", "time", "obs_blq", "pred_bin"):
                if k in row:
                    out[k][s, j] = row[k]
            if row["n_obs"] == 0:
                continue
            out["observed"][s, j] = row["observed"]
            out["obs_censored"][s, j] = row["obs_censored"]
            lo, med, hi = row["sims"]
            out["sim_lower"][s, j], out["sim_median"][s, j], out["sim_upper"][s, j] = lo, med, hi
            if "blq_sims" in row:
                lo, med, hi = row["blq_sims"]
                out["sim_blq_lower"][s, j] = lo
                out["sim_blq_median"][s, j] = med
                out["sim_blq_upper"][s, j] = hi
    if not has_lloq:
        for k in ("obs_blq", "sim_blq_lower", "sim_blq_median", "sim_blq_upper"):
            del out[k]
    if not pc:
        del out["pred_bin"]
    data_vars = {k: (("stratum", "bin", "pi")[: v.ndim], v) for k, v in out.items()}
    data_vars["y"] = ("obs", y)
    data_vars["bin_index"] = ("obs", b)
    data_vars["stratum_index"] = ("obs", s_code)
    return xr.Dataset(
        data_vars,
        coords={
            "stratum": labels,
            "bin": np.arange(n_b),
            "pi": p,
            "obs": np.arange(y.size),
        },
        attrs={
            "pc": bool(pc),
            "ci": float(info["ci"]),
            "n_sim": int(info["k_sim"]),
            "n_excluded": int(info["n_excluded"]),
            "lloq": bool(has_lloq),
        },
    )


# --------------------------------------------------------------------------------------------
# plot_vpc
# --------------------------------------------------------------------------------------------


def _strata_labels(ds, strata) -> np.ndarray | None:
    """Stratum label of each observation from a covariate name or per-subject/-obs values."""
    if strata is None:
        return None
    subj = ds.obs_index[0]
    if isinstance(strata, str):
        by_lower = {k.lower(): k for k in ds.covariates}
        if strata.lower() not in by_lower:
            raise ValueError(
                f"strata={strata!r} is not a covariate of the dataset; covariates: "
                f"{sorted(ds.covariates)}"
            )
        name = by_lower[strata.lower()]
        v = np.asarray(ds.covariates[name])
        if name in ds.covariate_levels:
            levels = ds.covariate_levels[name]
            lab = np.array([f"{name}={levels[int(c)]}" for c in v])
        elif np.unique(v[np.isfinite(v)]).size <= 5:
            lab = np.array([f"{name}={c:g}" for c in v])
        else:
            med = float(np.nanmedian(v))
            lab = np.where(v <= med, f"{name} <= {med:g}", f"{name} > {med:g}")
        return lab[subj]
    arr = np.asarray(strata).ravel()
    if arr.size == ds.n_id:
        return arr[subj]
    if arr.size == ds.n_obs:
        return arr
    raise ValueError(
        f"strata must be a covariate name or have one value per subject ({ds.n_id}) or per "
        f"observation ({ds.n_obs}); got {arr.size} values"
    )


def _simulations(model, ds, idata, sims, n_sim, seed) -> np.ndarray:
    name = model.output_name()
    if sims is None:
        from ..infer._predictive import simulate

        sims = simulate(model, ds, idata, etas="new", n_draws=n_sim, seed=seed)
    if hasattr(sims, "predictions"):
        arr = np.asarray(sims.predictions[name].values)
        return arr.reshape(-1, arr.shape[-1])
    arr = np.asarray(sims, dtype=float)
    if arr.ndim != 2 or arr.shape[1] != ds.n_obs:
        raise ValueError(f"sims must have shape (K, {ds.n_obs}); got {arr.shape}")
    return arr


def _fmt_pct(p: float) -> str:
    return f"{100 * p:g}th"


def plot_vpc(
    model,
    data: Any,
    idata,
    *,
    n_sim: int = 500,
    pc: bool = False,
    bins: Any = "auto",
    strata: Any = None,
    lloq: Any = None,
    log_y: bool = False,
    path=None,
    seed: int = 0,
    sims: Any = None,
    pi: tuple[float, float, float] = (0.05, 0.5, 0.95),
    ci: float = 0.95,
    dv_label: str = "DV",
    time_label: str = "TIME (h)",
):
    """Visual predictive check (VPC) or prediction-corrected VPC of a fit.

    Simulates ``n_sim`` replicates of the fitted design with NEW subjects (new ETAs, one
    posterior draw per replicate, :func:`bayes_nlme.simulate` with ``etas="new"``) and plots,
    per bin of time: the observations, the observed ``pi`` percentiles (lines; the median
    solid) and the ``ci`` intervals of the simulated percentiles (shaded; red for the median,
    blue for the outer percentiles). Statistics from :func:`vpc_stats`.

    Parameters
    ----------
    model : Model
    data : Dataset, DataFrame or path
        The fitted dataset.
    idata : arviz.InferenceData
        The fit (:func:`bayes_nlme.fit`).
    n_sim : int, default 500
        Replicates (posterior draws evenly thinned; at most the number of draws in the fit).
    pc : bool, default False
        Prediction-corrected VPC (Bergstrand et al. 2011): DV and simulations are scaled by
        ``PRED_bin / PRED`` with PRED from :func:`bayes_nlme.diagnostics.pred`; use it when
        doses, covariates or designs differ between subjects within a bin. Observations with
        PRED <= 0 (pre-dose) are left out. No variability correction (pvcVPC).
    bins : "auto", int or array of edges, default "auto"
        See :func:`vpc_stats`.
    strata : str or array_like, optional
        A covariate of the dataset (categorical or with at most 5 distinct values: one panel
        per value, labelled ``"NAME=value"``; continuous: split at the median ``m`` of the
        subjects' values into ``"NAME <= m"`` and ``"NAME > m"``), or one label per subject or
        per observation. One panel per stratum, in sorted order of the labels; bins are
        computed per stratum. A dataset with several endpoints (DVID) always gets one panel
        per endpoint (``"DVID=cp"``, ...), combined with ``strata``.
    lloq : float or array_like, optional
        Lower limit of quantification: censored observed percentiles are not drawn, the LLOQ
        is drawn as a line, and a second row shows the observed fraction below LLOQ with the
        simulated interval. Default: the dataset's LLOQ (``CENS``/``LLOQ`` columns) when it
        has one; censored observations (CENS=1) count as below it.
    log_y : bool, default False
        Logarithmic DV axis (non-positive values are not drawn).
    path : str or Path, optional
        Save the figure there (PNG, 120 dpi).
    seed : int, default 0
        Seed of the simulation.
    sims : InferenceData or array_like (K, n_obs), optional
        Precomputed simulations (the output of :func:`bayes_nlme.simulate` with
        ``etas="new"`` for this dataset, or its DV array); ``n_sim`` and ``seed`` are then
        ignored.
    pi : tuple of three floats, default (0.05, 0.5, 0.95)
    ci : float, default 0.95
    dv_label, time_label : str
        Axis labels (with units, e.g. ``"Theophylline (mg/L)"``).

    Returns
    -------
    matplotlib.figure.Figure
        The statistics are attached as ``fig.vpc_stats`` (the :func:`vpc_stats` Dataset).

    References
    ----------
    Bergstrand M. et al. (2011). AAPS J 13(2):143-151. Bergstrand M., Karlsson M.O. (2009).
    AAPS J 11(2):371-380.
    """
    import matplotlib.pyplot as plt

    from ..infer._fit import as_dataset

    ds = as_dataset(data)
    ysim = _simulations(model, ds, idata, sims, n_sim, seed)
    s, j = ds.obs_index
    time = ds.obs_time[s, j]
    dv = np.asarray(ds.dv, dtype=float)
    pred = None
    if pc:
        from ..diagnostics._residuals import pred as _pred

        pred = _pred(model, ds, idata)
    labels = _strata_labels(ds, strata)
    used = np.unique(ds.obs_dvid[s, j]) if ds.dvid_levels else np.zeros(0)
    if used.size > 1:  # one panel per endpoint (DVID), within each stratum
        dvid = np.asarray([f"DVID={ds.dvid_levels[c]}" for c in ds.obs_dvid[s, j]])
        labels = dvid if labels is None else np.char.add(np.char.add(dvid, ", "), labels)
    cens = ds.obs_cens[s, j]
    if lloq is None and (cens.any() or np.isfinite(ds.obs_lloq[s, j]).any()):
        lloq = np.where(np.isfinite(ds.obs_lloq[s, j]), ds.obs_lloq[s, j], -np.inf)
    if cens.any():  # a censored DV holds the limit: count it below the limit
        dv = np.where(cens, np.nextafter(np.asarray(lloq, float) * np.ones_like(dv), -np.inf), dv)
    st = vpc_stats(
        time,
        dv,
        ysim,
        bins=bins,
        pred=pred,
        pi=pi,
        ci=ci,
        strata=labels,
        lloq=lloq,
    )

    n_s = st.sizes["stratum"]
    has_lloq = lloq is not None
    blq = dv < np.broadcast_to(np.asarray(lloq, float), dv.shape) if has_lloq else dv < -np.inf
    nrows = 2 if has_lloq else 1
    fig, axes = plt.subplots(
        nrows,
        n_s,
        figsize=(5.4 * n_s + 0.6, 4.6 if nrows == 1 else 6.6),
        squeeze=False,
        sharey="row",
        constrained_layout=True,
        gridspec_kw={"height_ratios": [3, 1.3]} if has_lloq else None,
    )
    y_lab = f"Prediction-corrected {dv_label}" if pc else dv_label
    kind = "pcVPC" if pc else "VPC"
    med_i = int(np.argmin(np.abs(st["pi"].values - 0.5)))
    outer = ", ".join(_fmt_pct(q) for i, q in enumerate(st["pi"].values) if i != med_i)
    first_outer = min(i for i in range(st.sizes["pi"]) if i != med_i) if outer else -1
    y_all = st["y"].values
    floor = None
    if log_y:  # lower end of a log axis: below every positive value drawn
        cand = np.r_[y_all, st["observed"].values.ravel(), st["sim_lower"].values.ravel()]
        cand = cand[np.isfinite(cand) & (cand > 0)]
        floor = 0.5 * cand.min() if cand.size else 1e-3
    for si in range(n_s):
        ax = axes[0, si]
        sub = st.isel(stratum=si)
        ok = sub["n_obs"].values > 0
        tc = sub["time"].values[ok]
        pts = (st["stratum_index"].values == si) & np.isfinite(y_all)
        if log_y:
            pts &= y_all > 0
        q = pts & ~blq
        ax.plot(
            time[q], y_all[q], "o", ms=3, color="0.45", alpha=0.55, mec="none", label="Observed"
        )
        if (pts & blq).any():
            q = pts & blq
            ax.plot(
                time[q], y_all[q], "x", ms=3.5, color="0.45", alpha=0.7, label="Observed < LLOQ"
            )
        for k, pv in enumerate(st["pi"].values):
            is_med = k == med_i
            lo = sub["sim_lower"].values[ok, k]
            hi = sub["sim_upper"].values[ok, k]
            if log_y:
                lo = np.maximum(lo, floor)
                hi = np.maximum(hi, floor)
            if is_med:
                band_label = f"Simulated {_fmt_pct(pv)} pct: {ci:.0%} CI"
                line_label = f"Observed {_fmt_pct(pv)} pct"
            elif k == first_outer:
                band_label = f"Simulated {outer} pct: {ci:.0%} CI"
                line_label = f"Observed {outer} pct"
            else:
                band_label = line_label = None
            ax.fill_between(
                tc,
                lo,
                hi,
                color="C3" if is_med else "C0",
                alpha=0.28 if is_med else 0.2,
                lw=0,
                label=band_label,
            )
            ax.plot(
                tc,
                sub["observed"].values[ok, k],
                "-" if is_med else "--",
                color="darkred" if is_med else "navy",
                lw=1.8 if is_med else 1.3,
                label=line_label,
            )
        if has_lloq and not pc and np.ndim(lloq) == 0:
            ax.axhline(float(lloq), color="k", lw=0.9, ls=":", label="LLOQ")
        edges = np.unique(np.r_[sub["lower"].values[ok], sub["upper"].values[ok]])
        ax.vlines(edges, 0, 0.025, transform=ax.get_xaxis_transform(), color="k", lw=0.8)
        if log_y:
            ax.set_yscale("log")
            ax.set_ylim(bottom=floor)
        title = kind if n_s == 1 else f"{kind}: {st['stratum'].values[si]}"
        n_bins = int(ok.sum())
        ax.set_title(f"{title}  (n = {int(sub['n_obs'].sum())} obs, {n_bins} bins)", fontsize=10)
        if si == 0:
            ax.set_ylabel(y_lab)
        if nrows == 1:
            ax.set_xlabel(time_label)
        ax.grid(alpha=0.25)
        if has_lloq:
            bx = axes[1, si]
            bx.fill_between(
                tc,
                sub["sim_blq_lower"].values[ok],
                sub["sim_blq_upper"].values[ok],
                color="C2",
                alpha=0.3,
                lw=0,
                label=f"Simulated: {ci:.0%} CI",
            )
            bx.plot(tc, sub["obs_blq"].values[ok], "-o", color="darkgreen", ms=3, label="Observed")
            bx.set_ylim(-0.02, 1.02)
            bx.set_xlabel(time_label)
            bx.grid(alpha=0.25)
            if si == 0:
                bx.set_ylabel("Fraction < LLOQ")
                bx.legend(fontsize=8, frameon=False)
    axes[0, 0].legend(fontsize=8, frameon=False, loc="best")
    note = f"Shaded: {ci:.0%} CI over {st.attrs['n_sim']} simulated replicates (new subjects)"
    if pc and st.attrs["n_excluded"]:
        note += f"\n{st.attrs['n_excluded']} observations with PRED ≤ 0 (pre-dose) left out"
    fig.suptitle(note, fontsize=9, color="0.3")
    fig.vpc_stats = st
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
