"""NUTS fit of a population model to a dataset, returned as ArviZ InferenceData."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import MCMC, NUTS, init_to_median

from .._errors import ModelError
from ..data._dataset import Dataset
from ..population._model import SOLVER_FAILURES, Model

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

__all__ = ["fit", "init_to_typical", "as_dataset"]


def as_dataset(data: Any) -> Dataset:
    """A :class:`Dataset` from a Dataset, a pandas DataFrame or a CSV path."""
    if isinstance(data, Dataset):
        return data
    from ..data import read_nonmem  # the one place that reads tables

    return read_nonmem(data)


def init_to_typical(site=None, num_samples: int = 201):
    """NUTS initialisation: THETA/OMEGA near their prior medians, ETAs at 0, OMEGA corr = I.

    Population-level sites start at the median of ``num_samples`` prior draws (NumPyro's
    ``init_to_median``): with 201 draws that is within about 0.1 prior SD of the exact prior
    median, and different for each chain, so chains start apart but inside the same basin.
    The ETA draws (``z_eta``, ``eta_centered``, ``phi_eta`` or ``eta_partial``, at their
    mean) start at ETA = 0
    (every subject at the typical individual) and an LKJ correlation at the identity.

    Why: with NumPyro's and Stan's default uniform(-2, 2) initialisation on the unconstrained
    scale the Theophylline model gave R-hat ≈ 1.5 after 1000 warmup iterations; with the
    median of only 15 prior draws one chain in four started in the flip-flop basin of the
    oral model (KA and CL/V swapped, V ≈ 2 L) and stayed there (R-hat 1.53, measured).
    """
    if site is None:
        return functools.partial(init_to_typical, num_samples=num_samples)
    if site["type"] == "sample" and not site["is_observed"]:
        shape = site["fn"].shape(site["kwargs"].get("sample_shape", ()))
        if site["name"] in ("z_eta", "eta_centered", "z_kappa"):
            return jnp.zeros(shape)
        if site["name"] in ("phi_eta", "eta_partial"):  # ETA = 0 is the site mean (MU or 0)
            return jnp.broadcast_to(site["fn"].mean, shape)
        if site["name"] == "omega_corr_chol":
            return jnp.broadcast_to(jnp.eye(shape[-1]), shape)
    return init_to_median(site, num_samples=num_samples)


# Sites that hold the random effects (see Model.eta_site and the IOV KAPPAs).
_RANDOM_EFFECT_SITES = ("z_eta", "eta_centered", "phi_eta", "eta_partial", "z_kappa")

#: Chain starts ``fit``/``fit_batch`` accept (``init=``).
INITS = ("typical", "ebe")


def check_init(init: str) -> None:
    """Raise :class:`ModelError` unless ``init`` is one of :data:`INITS`."""
    if init not in INITS:
        raise ModelError(f"init must be one of {INITS}; got {init!r}.")


def typical_start(key, model: Model, mdata, dv):
    """The :func:`init_to_typical` start of one chain's key: ``(z, potential_fn)``, with
    ``z`` the unconstrained sites (traceable: :func:`bayes_nlme.fit_batch` calls it inside
    its compiled program)."""
    from numpyro.infer.util import initialize_model

    info = initialize_model(
        key,
        model.numpyro_model,
        model_args=(mdata,),
        model_kwargs=dict(DV=dv),
        init_strategy=init_to_typical(),
    )
    return info.param_info.z, info.potential_fn


def optimise_etas(z: dict, potential_fn, maxiter: int = 100, restarts: int = 5) -> dict:
    """``z`` with its random-effect sites moved to their joint mode given the other sites
    (the empirical Bayes estimates; NONMEM's POSTHOC step at the current THETA/OMEGA).

    BFGS (``jax.scipy.optimize.minimize``) over all random-effect sites at once,
    ``restarts`` times ``maxiter`` iterations at most; a restart that fails or does not
    lower the potential energy is not taken, so at worst ``z`` comes back unchanged.
    Traceable (no Python control flow on values).
    """
    from jax.flatten_util import ravel_pytree
    from jax.scipy.optimize import minimize

    ranef = {k: v for k, v in z.items() if k in _RANDOM_EFFECT_SITES}
    if not ranef:
        return z
    rest = {k: v for k, v in z.items() if k not in ranef}
    x0, unravel = ravel_pytree(ranef)

    def energy(x, rest):
        return potential_fn({**rest, **unravel(x)})

    def restart(_, xu):
        # JAX's BFGS stops on a failed line search (status 3) when its first steps, with
        # the identity as inverse Hessian, overshoot; restarting from the best point so far
        # converges (Theophylline: 2-4 restarts to |grad| < 1e-5).
        x, u = xu
        res = minimize(energy, x, args=(rest,), method="BFGS", options=dict(maxiter=maxiter))
        ok = jnp.isfinite(res.fun) & jnp.all(jnp.isfinite(res.x)) & (res.fun < u)
        return jnp.where(ok, res.x, x), jnp.where(ok, res.fun, u)

    x, _ = jax.lax.fori_loop(0, restarts, restart, (x0, energy(x0, rest)))
    return {**rest, **unravel(x)}


def ebe_init_params(
    model: Model, mdata, dv, seed: int, chains: int, maxiter: int = 100, restarts: int = 5
):
    """Unconstrained starting values: :func:`init_to_typical` for THETA/OMEGA/SIGMA, and
    the random effects at their joint mode given those (empirical Bayes estimates).

    One start per chain (leading axis ``chains`` when ``chains > 1``), each from the key
    :class:`numpyro.infer.MCMC` gives that chain (``PRNGKey(seed)`` for one chain, its
    ``chains``-way split otherwise), as ``fit(init="ebe")`` and ``fit_batch(init="ebe")``
    use them. See :func:`optimise_etas`.
    """
    key = jax.random.PRNGKey(seed)
    keys = jax.random.split(key, chains) if chains > 1 else key[None]
    starts = []
    for k in keys:
        with _explain_init_failure(model):
            z, potential_fn = typical_start(k, model, mdata, dv)
        starts.append(z)
    # the same density for every chain: one compiled optimisation
    solve = jax.jit(lambda z: optimise_etas(z, potential_fn, maxiter, restarts))
    starts = [solve(z) for z in starts]
    if chains == 1:
        return starts[0]
    return jax.tree_util.tree_map(lambda *v: jnp.stack(v), *starts)


@contextlib.contextmanager
def _explain_init_failure(model: Model):
    """Turn NumPyro's "Cannot find valid initial parameters" into advice for PK models."""
    try:
        yield
    except RuntimeError as e:
        if "Cannot find valid initial parameters" not in str(e):
            raise
        advice = getattr(model.dynamics, "failure_message", None)
        extra = (
            "\n" + advice()
            if advice
            else " Check that the priors put the typical values (THETA) at plausible values "
            "and that pre() gives positive CL, V, KA for them."
        )
        raise ModelError(
            "NUTS could not find a starting point with a finite log density (at the prior "
            f"medians with ETAs at 0 nor at random points near them).{extra}"
        ) from None


def _chain_method(chains: int) -> str:
    if chains <= 1:
        return "sequential"
    if jax.local_device_count() >= chains:
        return "parallel"
    if jax.default_backend() != "cpu":
        return "vectorized"  # one accelerator: run chains as a batch
    return "sequential"


def fit(
    model: Model,
    data: Any,
    *,
    chains: int = 4,
    warmup: int = 1000,
    samples: int = 1000,
    seed: int = 0,
    target_accept: float = 0.9,
    max_tree_depth: int = 10,
    dense_mass: bool = False,
    chain_method: str | None = None,
    progress_bar: bool | None = None,
    init: str = "typical",
):
    """Fit a population model with NUTS (NumPyro) and return ArviZ InferenceData.

    Parameters
    ----------
    model : Model
        The population model.
    data : Dataset, pandas.DataFrame or path
        The NONMEM-style dataset (read with :func:`bayes_nlme.read_nonmem` when not a Dataset).
    chains : int, default 4
        Number of chains. On CPU they run in parallel when JAX has that many host devices
        (``import bayes_nlme`` configures ``max(16, cpu_count)`` of them; see the README),
        otherwise one after another; on a single GPU they run vectorised.
    warmup, samples : int, default 1000
        Warmup (adaptation) and retained iterations per chain.
    seed : int, default 0
        Seed of the PRNG key; the same seed gives the same draws.
    target_accept : float, default 0.9
        NUTS target acceptance probability (Stan's ``adapt_delta``). 0.9 rather than 0.8
        because hierarchical models with few subjects have curved funnels in the OMEGA SDs.
    max_tree_depth : int, default 10
    dense_mass : bool or list of tuple of str, default False
        Adapt a dense mass matrix for the population parameters and ETAs (``True``), or
        dense blocks for groups of sites and a diagonal for the rest (NumPyro's structured
        form, e.g. ``[("tvvm", "tvkm")]`` for two correlated typical values).
    chain_method : {"parallel", "sequential", "vectorized"}, optional
        Override the automatic choice.
    progress_bar : bool, optional
        Show NumPyro's progress bar (default: when stderr is a terminal).
    init : {"typical", "ebe"}, default "typical"
        Where the chains start. ``"typical"``: :func:`init_to_typical` (THETA/OMEGA near
        their prior medians, every ETA at 0). ``"ebe"``: the same THETA/OMEGA, with each
        subject's ETAs at their empirical Bayes estimates (the mode of the joint density
        over all ETAs with THETA/OMEGA/SIGMA held at the start, by BFGS; NONMEM's
        "POSTHOC" step at the initial estimates). Use it when subjects far from the typical
        individual give the start a high potential energy: the first trajectories then
        turn that energy into momentum and can carry a chain far from the posterior, into
        a region where its step size collapses (measured on warfarin PK/PD: one chain in
        about five went to PCA turnover KOUT ≈ 21/h and stalled at step size 1e-7). If the
        optimisation fails (non-finite density, no improvement), the chain starts at the
        typical values.

    Returns
    -------
    arviz.InferenceData
        Groups ``posterior`` (population parameters; ``eta_<name>`` and individual parameters
        with dim ``ID``; ``IPRED`` with dim ``obs``), ``sample_stats``, ``log_likelihood``
        (pointwise DV, dim ``obs``), ``observed_data`` (DV), ``constant_data`` (``TIME``,
        ``subject`` per observation; ``dose_time``, ``AMT``, ``RATE`` per subject and dose;
        the model's covariates per subject). ``ID`` coordinates are the dataset's subject IDs.
        ``posterior[name].attrs["unit"]`` holds declared units. For ODE models
        ``sample_stats.attrs["ode_solver_failures"]`` counts the log-density evaluations
        (warmup and sampling, all chains) in which some subject's solve failed; each was
        treated as log density -inf, and a ``RuntimeWarning`` with the remedies is issued
        when the count is not zero.

    Raises
    ------
    DatasetError
        If ``data`` is not a valid NONMEM dataset (every problem is listed).
    ModelError
        If the model does not fit the data (missing covariates, DV <= 0 with exponential
        error, ``pre`` not returning the structural model's parameters), or ``init`` is
        not one of the choices above.

    Examples
    --------
    >>> import bayes_nlme as bn
    >>> from bayes_nlme.model_zoo.theophylline import model
    >>> data = bn.datasets.load("theophylline")
    >>> idata = bn.fit(model, data, warmup=200, samples=200)  # doctest: +SKIP
    """
    check_init(init)
    ds, mdata = prepare(model, data)
    obs_name = model.output_name()
    dv = np.asarray(ds.dv, dtype=float)
    method = chain_method or _chain_method(chains)
    if progress_bar is None:
        progress_bar = sys.stderr.isatty() and not os.environ.get("CI")
    kernel = NUTS(
        model.numpyro_model,
        target_accept_prob=target_accept,
        max_tree_depth=max_tree_depth,
        dense_mass=dense_mass,
        init_strategy=init_to_typical(),
    )
    mcmc = MCMC(
        kernel,
        num_warmup=warmup,
        num_samples=samples,
        num_chains=chains,
        chain_method=method,
        progress_bar=progress_bar,
        # Data as arguments of the compiled sampler, not constants folded into it: the
        # program is then the one fit_batch runs (equal draws to round-off), and a second
        # dataset of the same shape reuses it.
        jit_model_args=True,
    )
    init_params = None
    if init == "ebe":
        init_params = ebe_init_params(model, mdata, jnp.asarray(dv), seed, chains)
        jax.effects_barrier()  # failed solves inside the optimisation are not the sampler's
    SOLVER_FAILURES.reset()
    with warnings.catch_warnings(), _explain_init_failure(model):
        warnings.filterwarnings("ignore", message="There are not enough devices")
        mcmc.run(
            jax.random.PRNGKey(seed),
            mdata,
            extra_fields=_EXTRA_FIELDS,
            init_params=init_params,
            DV=jnp.asarray(dv),
        )
    idata = to_inference_data(model, ds, mcmc, obs_name)
    idata.sample_stats.attrs.update(
        max_tree_depth=max_tree_depth,
        target_accept=target_accept,
        warmup=warmup,
        seed=seed,
        chain_method=method,
        init=init,
    )
    if hasattr(model.dynamics, "solve_status"):
        _report_solver_failures(model, idata)
    return idata


def _report_solver_failures(model: Model, idata) -> None:
    """Record (and warn about) the log-density evaluations whose ODE solve failed."""
    jax.effects_barrier()  # the host callbacks of the run have all arrived
    n = SOLVER_FAILURES.evaluations
    idata.sample_stats.attrs["ode_solver_failures"] = n
    if n:
        warnings.warn(
            f"{n} log-density evaluation(s) during warmup and sampling had a failed ODE "
            "solve for some subject; each counted as log density -inf (the proposal was "
            "rejected), so the draws are valid, but many failures slow NUTS down and can "
            "hide part of the posterior. " + model.dynamics.failure_message(),
            RuntimeWarning,
            stacklevel=3,
        )


def prepare(model: Model, data: Any):
    """The Dataset and the model's ModelData for a fit, with the checks every fit needs
    (observations present, DV > 0 where the error model requires it)."""
    ds = as_dataset(data)
    if ds.n_obs == 0:
        raise ModelError("The dataset has no observations (EVID=0, MDV=0 rows) to fit.")
    mdata = model.model_data(ds)
    check_positive_dv(model, ds, mdata)
    return ds, mdata


def check_positive_dv(model: Model, ds: Dataset, mdata) -> None:
    """ModelError naming the rows where an error model that needs DV > 0 meets DV <= 0."""
    need = model.positive_required(mdata)
    dv = np.asarray(ds.dv, dtype=float)
    bad_obs = need & (dv <= 0)
    if np.any(bad_obs):
        bad = ds.obs_row[ds.obs_index][bad_obs]
        raise ModelError(
            f"Exponential (log-normal) error needs DV > 0, but DV <= 0 on rows "
            f"{bad[:20].tolist()}{' ...' if bad.size > 20 else ''}. Use an additive or "
            "combined error model, or mark those rows as not observed (MDV=1) or as BLQ "
            "(CENS=1)."
        )


def model_coords(model: Model, ds: Dataset) -> dict:
    """ArviZ coordinates: the dataset's subject IDs, observation index, ETA names, dose slot,
    and with IOV the occasions (``OCC``) and KAPPA names."""
    coords = {
        "ID": np.asarray(ds.ids),
        "obs": np.arange(ds.n_obs),
        "eta": list(model.eta_names),
        "eta_": list(model.eta_names),
        "dose": np.arange(ds.dose_time.shape[1]),
    }
    if model.iov is not None:
        coords["OCC"] = model.occasion_values(ds)
        coords["kappa"] = list(model.kappa_names)
    return coords


def model_dims(model: Model, obs_name: str) -> dict[str, list[str]]:
    """ArviZ dims of the model's sites (``ID``, ``obs``, ``eta``)."""
    dims = {f"eta_{n}": ["ID"] for n in model.eta_names}
    dims.update({k: ["ID"] for k in model._probe()[0]})
    dims["z_eta"] = ["ID", "eta"]
    dims["eta_centered"] = ["ID", "eta"]
    dims["phi_eta"] = ["ID", "eta"]
    dims["eta_partial"] = ["ID", "eta"]
    dims["omega_corr"] = ["eta", "eta_"]
    dims["omega_corr_chol"] = ["eta", "eta_"]
    dims["IPRED"] = ["obs"]
    dims["BLQ"] = ["obs"]
    dims["solver_ok"] = ["ID"]
    dims[obs_name] = ["obs"]
    dims.update({f"kappa_{n}": ["ID", "OCC"] for n in model.kappa_names})
    dims["z_kappa"] = ["ID", "OCC", "kappa"]
    return dims


def constant_data(model: Model, ds: Dataset) -> tuple[dict, dict]:
    """The design as ``constant_data``: TIME and subject per observation, doses per subject
    (NaN where padded), and the model's covariates per subject; with their dims."""
    s, j = ds.obs_index
    pad = ~ds.dose_mask
    data = {
        "TIME": ds.obs_time[s, j],
        "subject": ds.obs_id,
        "dose_time": np.where(pad, np.nan, ds.dose_time),
        "AMT": np.where(pad, np.nan, ds.dose_amt),
        "RATE": np.where(pad, np.nan, ds.dose_rate),
    }
    dims = {
        "TIME": ["obs"],
        "subject": ["obs"],
        "dose_time": ["ID", "dose"],
        "AMT": ["ID", "dose"],
        "RATE": ["ID", "dose"],
    }
    if ds.dvid_levels:
        data["DVID"] = np.asarray(ds.dvid_levels, dtype=object)[ds.obs_dvid[s, j]].astype(str)
        dims["DVID"] = ["obs"]
    if ds.obs_cens[s, j].any() or np.isfinite(ds.obs_lloq[s, j]).any():
        data["CENS"] = ds.obs_cens[s, j].astype(int)
        data["LLOQ"] = ds.obs_lloq[s, j]
        dims["CENS"] = ["obs"]
        dims["LLOQ"] = ["obs"]
    by_lower = {k.lower(): k for k in ds.covariates}
    for c in model.covariates:
        data[c] = np.asarray(ds.covariates[by_lower[c.lower()]])
        dims[c] = ["ID"]
    return data, dims


_EXTRA_FIELDS = (
    "potential_energy",
    "energy",
    "num_steps",
    "mean_accept_prob",
    "diverging",
    "adapt_state.step_size",
)


def to_inference_data(model: Model, ds: Dataset, mcmc: MCMC, obs_name: str):
    """Convert a finished NumPyro run into InferenceData with the ``ID``/``obs`` schema.

    Built with ``arviz.from_dict`` from the draws NumPyro kept (``az.from_numpyro`` would
    re-trace the model eagerly, which costs several seconds of op-by-op compilation).
    """
    draws = mcmc.get_samples(group_by_chain=True)
    extra = mcmc.get_extra_fields(group_by_chain=True)
    return draws_to_inference_data(model, ds, draws, extra, obs_name)


def draws_to_inference_data(model: Model, ds: Dataset, draws: dict, extra: dict, obs_name: str):
    """InferenceData from draws and NUTS fields, each shaped (chain, draw, ...).

    ``draws`` holds the constrained sites and deterministics (``loglik_<obs_name>``
    included); ``extra`` the fields of ``_EXTRA_FIELDS``.
    """
    draws = {k: np.asarray(v) for k, v in draws.items()}
    loglik = {obs_name: draws.pop(f"loglik_{obs_name}")}
    extra = {k: np.asarray(v) for k, v in extra.items()}
    n_steps = extra["num_steps"]
    sample_stats = {
        "lp": -extra["potential_energy"],
        "energy": extra["energy"],
        "n_steps": n_steps,
        "tree_depth": np.floor(np.log2(np.maximum(n_steps, 1))).astype(int) + 1,
        "acceptance_rate": extra["mean_accept_prob"],
        "diverging": extra["diverging"],
        "step_size": extra["adapt_state.step_size"],
    }
    cdata, cdims = constant_data(model, ds)
    dims = {**model_dims(model, obs_name), **cdims}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = az.from_dict(
            posterior=draws,
            sample_stats=sample_stats,
            log_likelihood=loglik,
            observed_data={obs_name: np.asarray(ds.dv)},
            constant_data=cdata,
            coords=model_coords(model, ds),
            dims=dims,
        )
    for group in ("posterior", "sample_stats"):
        idata[group].attrs["inference_library"] = "numpyro"
    for name, unit in model.units().items():
        if name in idata.posterior:
            idata.posterior[name].attrs["unit"] = unit
    idata.posterior.attrs["model"] = model.name
    idata.posterior.attrs["population_parameters"] = ",".join(model.population_names())
    return idata
