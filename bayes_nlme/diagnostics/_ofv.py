r"""NONMEM-style objective function value (OFV) by the Laplace approximation, and a MAP fit.

The marginal likelihood of a population model integrates each subject's random effects
(ETAs) out of the joint density,

.. math::

    m_i(\theta, \Omega) = \int p(y_i \mid \eta, \theta)\, \mathcal N(\eta; 0, \Omega)\, d\eta ,

and the OFV is :math:`-2 \sum_i \log m_i` (less a constant, see :func:`laplace_ofv`). The
integral has no closed form for nonlinear models; here it is approximated by Laplace's method
at the mode of each subject's integrand (NONMEM's ``METHOD=COND LAPLACIAN``), or by
NONMEM's FOCE-I linearisation at the same mode, which reproduces NONMEM's reported OFV.

Public functions: :func:`laplace_ofv` and :func:`focei_ofv` (OFV, AIC and BIC at given
population parameters), :func:`ofv_function` (a differentiable OFV for your own optimisers
or profiles) and :func:`map_fit` (maximum likelihood / maximum a posteriori estimates of the
population parameters, gradient-based, on either objective).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.flatten_util import ravel_pytree
from jax.scipy.linalg import cho_solve
from numpyro.distributions.transforms import biject_to

from .._errors import ModelError
from ..data import Dataset, read_nonmem
from ..data._dataset import Doses

__all__ = ["MAPResult", "OFVResult", "focei_ofv", "laplace_ofv", "map_fit", "ofv_function"]

LOG_2PI = math.log(2.0 * math.pi)

# Inner (per-subject) mode search: modified Newton with backtracking.
_NEWTON_MAX_ITER = 100
_NEWTON_MAX_HALVINGS = 40
_NEWTON_STOP = 1e-24  # stop after the step from a point with Newton decrement g' A^-1 g below
_NEWTON_LOCAL = 1e-10  # below this decrement take full Newton steps (no line search)
_NEWTON_CONVERGED = 1e-8  # report a subject as converged below this decrement (≈ 2x the
# gap between the log integrand at the returned point and at the exact mode)
_EIG_FLOOR = 1e-8  # modified Newton: |eigenvalue| floor of the negated Hessian


# --------------------------------------------------------------------------- results
@dataclasses.dataclass(frozen=True)
class OFVResult:
    r"""The Laplace OFV of a model at fixed population parameters (see :func:`laplace_ofv`).

    Attributes
    ----------
    ofv : float
        Objective function value, :math:`-2 \log L` (NONMEM convention: without
        :math:`N_\mathrm{obs} \log 2\pi` unless ``constant=True`` was asked for).
    n_obs : int
        Number of observations :math:`N_\mathrm{obs}`.
    n_id : int
        Number of subjects.
    n_params : int
        Number of estimated population parameters :math:`p`: every ``Param`` of the model
        (THETA and residual-error parameters), one SD per random effect and, for a block
        OMEGA, the :math:`k(k-1)/2` correlations.
    aic : float
        :math:`\mathrm{OFV} + 2p`.
    bic : float
        :math:`\mathrm{OFV} + p \log n_\mathrm{id}` (number of subjects, not of
        observations).
    eta_mode : ndarray, shape (n_id, n_eta)
        Each subject's ETA mode :math:`\hat\eta_i` (the conditional mode, NONMEM's
        "conditional estimates"/EBEs at these parameters), columns in ``model.eta_names``
        order; ``n_eta = 0`` without IIV.
    converged : ndarray of bool, shape (n_id,)
        Whether the mode search of each subject converged (always True without IIV).
    ofv_subject : ndarray, shape (n_id,)
        Each subject's contribution :math:`-2 \log m_i` (same constant convention as
        ``ofv``; NONMEM's individual OFV, ``iOFV``). Sums to ``ofv``.
    """

    ofv: float
    n_obs: int
    n_id: int
    n_params: int
    aic: float
    bic: float
    eta_mode: np.ndarray
    converged: np.ndarray
    ofv_subject: np.ndarray


@dataclasses.dataclass(frozen=True)
class MAPResult:
    r"""Maximum-likelihood / maximum-a-posteriori population estimates (see :func:`map_fit`).

    Attributes
    ----------
    params : dict of str to float (and ``omega_corr`` ndarray, shape (n_eta, n_eta))
        Estimates on the natural scale, under the names :func:`laplace_ofv` takes.
    ofv : float
        OFV of the fit's ``method`` at the estimates (NONMEM convention, without
        :math:`N_\mathrm{obs} \log 2\pi`). With ``prior=True`` this is the OFV at the MAP
        estimate, not the minimised objective (which also has the prior term).
    aic, bic : float
        As in :class:`OFVResult`, at the estimates.
    converged : bool
        The outer optimiser met its gradient tolerance and every subject's inner mode search
        converged at the estimates.
    n_iter : int
        Number of outer (BFGS) iterations.
    """

    params: dict
    ofv: float
    aic: float
    bic: float
    converged: bool
    n_iter: int


# --------------------------------------------------------------------------- data
class _Arrays(NamedTuple):
    """Per-subject arrays the compiled objective maps over (a pytree)."""

    doses: Doses  # fields (n_id, n_dose_max)
    covariates: dict  # name -> (n_id,)
    obs_time: Any  # (n_id, n_obs_max); padded slots hold a copy of a real observation
    obs_dv: Any  # (n_id, n_obs_max)
    obs_mask: Any  # (n_id, n_obs_max)


def _prepare(model, data) -> tuple[Dataset, _Arrays]:
    """Validate ``data`` against ``model`` and build the arrays of the compiled objective.

    Padded observation slots are filled with a copy of the subject's first real observation
    (time and DV), so every evaluated log-density, and its derivatives, are finite; the mask
    then removes them from the sum (``jnp.where`` would not stop a NaN in the discarded branch
    from poisoning gradients).
    """
    ds = data if isinstance(data, Dataset) else read_nonmem(data)
    if ds.n_obs == 0:
        raise ModelError("The dataset has no observations (EVID=0, MDV=0 rows) to fit.")
    md = model.model_data(ds)
    unsupported = [
        what
        for what, present in (
            ("several outputs (DVID endpoints)", md.obs_which is not None),
            ("censored (BLQ) observations", md.obs_cens is not None),
            ("reset records (EVID 3/4), IOV or time-varying covariates", md.unit_id is not None),
        )
        if present
    ]
    if unsupported:
        raise ModelError(
            f"The OFV (Laplace, FOCE-I) and MAP fit support neither {' nor '.join(unsupported)} "
            "yet; compare such models with bayes_nlme.diagnostics.loo instead."
        )
    from ..infer._fit import check_positive_dv

    check_positive_dv(model, ds, md)
    mask = np.asarray(ds.obs_mask, dtype=bool)
    time = np.asarray(ds.obs_time, dtype=float)
    dv = np.asarray(ds.obs_dv, dtype=float)
    s, j = ds.obs_index
    fill_time = np.full(ds.n_id, time[s[0], j[0]])
    fill_dv = np.full(ds.n_id, dv[s[0], j[0]])
    first = mask.argmax(axis=1)
    has = mask.any(axis=1)
    rows = np.arange(ds.n_id)
    fill_time[has] = time[rows, first][has]
    fill_dv[has] = dv[rows, first][has]
    time = np.where(mask, time, fill_time[:, None])
    dv = np.where(mask, dv, fill_dv[:, None])
    arrays = _Arrays(md.doses, md.covariates, jnp.asarray(time), jnp.asarray(dv), jnp.asarray(mask))
    return ds, arrays


# --------------------------------------------------------------------------- parameters
def _n_params(model) -> int:
    k = len(model.eta_names)
    block = model.random is not None and model.random.corr is not None
    n_theta = sum(not p.is_fixed for p in model.params.values())  # FIXed ones are not counted
    k_free = k - (len(model.random.fixed_sds()) if model.random is not None else 0)
    if not block:
        return n_theta + k_free
    # the correlations the prior's support leaves free: k(k-1)/2 for a full block, the
    # within-block pairs for a block-diagonal OMEGA
    n_corr = biject_to(model.random.corr_prior().support).inverse_shape((k, k))[-1]
    return n_theta + k_free + int(n_corr)


def _unpack(model, params: Mapping, *, check_values: bool):
    """``params`` dict -> (theta dict, OMEGA SDs (k,), correlation matrix (k, k)).

    Raises ModelError naming every missing parameter; with ``check_values`` also checks that
    SDs are >= 0 and ``omega_corr`` is a correlation matrix (needs concrete values).
    """
    if not isinstance(params, Mapping):
        raise ModelError(
            f"params must be a dict of population parameter values; got {type(params).__name__}."
        )
    fixed = model.fixed_values()
    required = [n for n in model.population_names() if n not in fixed]
    missing = [n for n in required if n not in params]
    if missing:
        raise ModelError(
            f"params is missing {missing}; the model needs values for {required} "
            "(THETA and residual parameters by name, OMEGA as SDs 'omega_<eta>_sd' and, for "
            "a block OMEGA, the correlation matrix 'omega_corr')."
        )
    scalars = [n for n in (*model.params, *model.omega_sd_names()) if n not in fixed]
    bad_shape = [n for n in scalars if jnp.shape(params[n]) != ()]
    if bad_shape:
        raise ModelError(f"Population parameters must be scalars; not so for {bad_shape}.")
    theta = {n: jnp.asarray(fixed.get(n, params.get(n)), dtype=float) for n in model.params}
    k = len(model.eta_names)
    sd_list = [
        jnp.asarray(fixed.get(n, params.get(n)), dtype=float) for n in model.omega_sd_names()
    ]
    sds = jnp.stack(sd_list) if k else jnp.zeros((0,))
    if model.random is not None and model.random.corr is not None:
        corr = jnp.asarray(params["omega_corr"], dtype=float)
        if corr.shape != (k, k):
            raise ModelError(
                f"omega_corr must be a ({k}, {k}) correlation matrix in the order "
                f"{list(model.eta_names)}; got shape {corr.shape}."
            )
    else:
        corr = jnp.eye(k)
    if check_values:
        _check_values(model, theta, sds, corr)
    return theta, sds, corr


def _check_values(model, theta, sds, corr) -> None:
    try:
        sd_np = np.asarray(sds)
        corr_np = np.asarray(corr)
        theta_np = {n: float(v) for n, v in theta.items()}
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return
    bad = [n for n, v in theta_np.items() if not np.isfinite(v)]
    bad += [n for n, v in zip(model.omega_sd_names(), sd_np, strict=True) if not v >= 0]
    if bad:
        raise ModelError(
            f"Population parameters must be finite (OMEGA SDs >= 0); not so for {bad}."
        )
    if corr_np.size:
        ok = (
            np.allclose(corr_np, corr_np.T, atol=1e-10)
            and np.allclose(np.diag(corr_np), 1.0, atol=1e-10)
            and np.all(np.linalg.eigvalsh(corr_np) > 0)
        )
        if not ok:
            raise ModelError(
                "omega_corr must be a symmetric positive definite matrix with unit diagonal."
            )


# --------------------------------------------------------------------------- one subject
def _subject_loglik(model, theta, eta_vec, cov, doses, times, dv, mask):
    r""":math:`\sum_j \log p(y_{ij} \mid \eta)` over the subject's real observations."""
    eta = {n: eta_vec[i] for i, n in enumerate(model.eta_names)}
    _, outputs = model.subject(theta, eta, cov, doses, times)
    ((_, err),) = outputs.items()
    lp = err.distribution().log_prob(dv)
    return jnp.sum(jnp.where(mask, lp, 0.0))


def _value_grad_hess(f, z):
    """``f(z)``, its gradient and its Hessian in one forward-over-reverse pass."""
    vg = jax.value_and_grad(f)

    def grad_with_aux(z):
        v, g = vg(z)
        return g, (v, g)

    H, (v, g) = jax.jacfwd(grad_with_aux, has_aux=True)(z)
    return v, g, H


def _find_mode(h, k: int):
    r"""Maximise ``h`` (R^k -> R) from 0: modified Newton with backtracking (Armijo).

    The direction solves :math:`|A|\, d = g` with :math:`A = -\nabla^2 h` made positive
    definite by taking absolute eigenvalues floored at ``_EIG_FLOOR`` (so a non-concave
    region still gives an ascent direction); the step halves until the Armijo condition
    holds (a NaN or -inf value counts as failure). Once the Newton decrement
    :math:`\lambda^2 = g^\top |A|^{-1} g` (≈ twice the gap to the maximum) is below
    ``_NEWTON_LOCAL`` the full step is taken whenever the value is finite: there the gain is
    below the rounding error of ``h`` and Armijo's test would stall short of the mode.
    Stops after ``_NEWTON_MAX_ITER`` iterations, when no step is accepted, or after the step
    from a point with :math:`\lambda^2` below ``_NEWTON_STOP`` or no longer decreasing
    (rounding floor). Not differentiated: see :func:`_subject_impl`.
    """

    def body(state):
        z, f, it, lam2_prev, _ = state
        _, g, H = _value_grad_hess(h, z)
        w, V = jnp.linalg.eigh(-H)
        w = jnp.maximum(jnp.abs(w), _EIG_FLOOR)
        d = V @ ((V.T @ g) / w)
        ok_dir = jnp.all(jnp.isfinite(d))
        d = jnp.where(ok_dir, d, 0.0)
        lam2 = jnp.where(ok_dir, g @ d, jnp.inf)
        local = lam2 < _NEWTON_LOCAL

        def accept(t, fn):
            return jnp.isfinite(fn) & ((fn >= f + 1e-4 * t * lam2) | local)

        def ls_cond(c):
            t, fn, n = c
            return (n == 0) | (~accept(t, fn) & (n < _NEWTON_MAX_HALVINGS))

        def ls_body(c):
            t, _, n = c
            t = 0.5 * t  # 1, 1/2, 1/4, ...
            return t, h(z + t * d), n + 1

        t, fn, _ = jax.lax.while_loop(ls_cond, ls_body, (2.0, f, 0))
        ok = accept(t, fn) & ok_dir
        z_new = jnp.where(ok, z + t * d, z)
        f_new = jnp.where(ok, fn, f)
        done = ~ok | (lam2 < _NEWTON_STOP) | (local & (lam2 > 0.25 * lam2_prev))
        return z_new, f_new, it + 1, lam2, done

    def cond(state):
        _, _, it, _, done = state
        return (it < _NEWTON_MAX_ITER) & ~done

    z0 = jnp.zeros(k)
    z, *_ = jax.lax.while_loop(cond, body, (z0, h(z0), 0, jnp.inf, False))
    return z


def _normal_parts(model, theta, eta_vec, cov, doses, times, dv):
    """Mean, SD, transformed DV and log-Jacobian of a normal (or log-normal) residual."""
    eta = {n: eta_vec[i] for i, n in enumerate(model.eta_names)}
    _, outputs = model.subject(theta, eta, cov, doses, times)
    ((_, err),) = outputs.items()
    d = err.distribution()
    if isinstance(d, dist.LogNormal):
        y, log_jac = jnp.log(dv), -jnp.log(dv)
    elif isinstance(d, dist.Normal):
        y, log_jac = dv, jnp.zeros_like(dv)
    else:
        raise ModelError(
            f"FOCE-I needs a normal or log-normal residual distribution; {type(err).__name__} "
            f"gives {type(d).__name__}. Use laplace_ofv."
        )
    shape = jnp.shape(times)
    loc = jnp.broadcast_to(d.loc, shape)
    return loc, (jnp.broadcast_to(d.scale, shape), y, log_jac)


def _focei_log_m(model, theta, chol, z, data):
    r"""FOCE-I approximation of :math:`\log m_i` at the ETA mode :math:`\eta = L z`.

    NONMEM's FOCE with interaction linearises the prediction around the mode,
    :math:`f(\eta) \approx f(\hat\eta) + J (\eta - \hat\eta)`, keeps the residual variance
    :math:`\Sigma = \operatorname{diag}(s_j^2)` at :math:`\hat\eta`, and integrates the now
    Gaussian model exactly: :math:`y \sim \mathcal N(f - J\hat\eta,\; C)` with
    :math:`C = J \Omega J^\top + \Sigma`. In whitened form (:math:`J_z = J L`,
    :math:`M = I + J_z^\top \Sigma^{-1} J_z`, :math:`v = y - f + J_z \hat z`),

    .. math::

        -2\log m_i = \sum_j \log(2\pi s_j^2) + \log\det M
            + v^\top \Sigma^{-1} v - v^\top \Sigma^{-1} J_z M^{-1} J_z^\top \Sigma^{-1} v

    (:math:`\log\det C` and :math:`v^\top C^{-1} v` by the determinant lemma and Woodbury).
    Log-normal residuals are linearised on the log scale (NONMEM's log-transform-both-sides)
    and the Jacobian :math:`-\sum \log y_j` puts the result back on the DV scale.
    """
    cov, doses, times, dv, mask = data

    def mean(z):
        return _normal_parts(model, theta, chol @ z, cov, doses, times, dv)

    J, (f, (s, y, log_jac)) = jax.jacfwd(lambda z: (lambda m: (m[0], m))(mean(z)), has_aux=True)(z)
    k = z.shape[0]
    w = jnp.where(mask, 1.0 / s**2, 0.0)
    v = jnp.where(mask, y - f, 0.0) + J @ z
    M = jnp.eye(k) + J.T @ (w[:, None] * J)
    cM = jnp.linalg.cholesky(M)
    b = J.T @ (w * v)
    quad = jnp.sum(w * v**2) - b @ cho_solve((cM, True), b)
    logs = jnp.sum(jnp.where(mask, LOG_2PI + 2.0 * jnp.log(s) - 2.0 * log_jac, 0.0))
    return -0.5 * (logs + 2.0 * jnp.sum(jnp.log(jnp.diagonal(cM))) + quad)


def _subject_impl(model, method, pop, data, with_grad):
    r"""One subject: (log m, ETA mode in whitened coordinates, Newton decrement)[, gradient].

    Works in whitened coordinates :math:`\eta = L z` (:math:`\Omega = L L^\top`), where

    .. math::

        h(z) = \log p(y \mid L z) - \tfrac12 z^\top z ,\qquad
        \log m \approx h(\hat z) - \tfrac12 \log\det\big(-\nabla^2 h(\hat z)\big)

    (the :math:`\tfrac k2 \log 2\pi` of the Laplace formula cancels that of the standard
    normal density and :math:`|\det L|` cancels the normaliser of :math:`\mathcal N(0, \Omega)`).
    Laplace's method is invariant under this linear change of variables, so this equals the
    formula in :math:`\eta`, and it stays defined when an OMEGA SD is 0.

    Gradient with respect to the population parameters :math:`\phi = (\theta, L)` of
    :math:`Q(\hat z(\phi), \phi)` (:math:`Q` the Laplace or FOCE-I value at the mode), by
    the implicit-function theorem: :math:`g(\hat z, \phi) = \nabla_z h = 0` gives
    :math:`d\hat z / d\phi = A^{-1} \partial_\phi g` with :math:`A = -\nabla^2_z h`, so

    .. math::

        \frac{dQ}{d\phi} = \partial_\phi Q + (\partial_\phi g)^\top A^{-1} \nabla_z Q .

    :math:`\nabla_z Q`, :math:`\partial_\phi Q` and :math:`\partial_\phi g` come from one
    forward-mode Jacobian of :math:`(Q, g)` in :math:`(z, \phi)` at the mode (forward mode:
    :math:`k + \dim\phi` directions, cheaper to compile than reverse mode over the Hessian).
    The mode search itself is never differentiated.
    """
    cov, doses, times, dv, mask = data
    k = pop[1].shape[0]

    def h(z, pop):
        theta_, chol_ = pop
        ll = _subject_loglik(model, theta_, chol_ @ z, cov, doses, times, dv, mask)
        return ll - 0.5 * z @ z

    z_star = _find_mode(lambda z: h(z, pop), k)

    def Q(z, pop):
        v, g, H = _value_grad_hess(lambda z: h(z, pop), z)
        A = -H
        if method == "laplace":
            val = v - jnp.sum(jnp.log(jnp.diagonal(jnp.linalg.cholesky(A))))
        else:
            val = _focei_log_m(model, pop[0], pop[1], z, data)
        return val, g, A

    if not with_grad:
        val, g, A = Q(z_star, pop)
        grad = None
    else:
        flat, unravel = ravel_pytree(pop)

        def outputs(x):
            val, g, A = Q(x[:k], unravel(x[k:]))
            return jnp.concatenate([val[None], g]), (val, g, A)

        jac, (val, g, A) = jax.jacfwd(outputs, has_aux=True)(jnp.concatenate([z_star, flat]))
        Qz, Qp, dg_dp = jac[0, :k], jac[0, k:], jac[1:, k:]
        w = cho_solve((jnp.linalg.cholesky(A), True), Qz)
        grad = unravel(Qp + w @ dg_dp)
    decrement = g @ cho_solve((jnp.linalg.cholesky(A), True), g)
    return (val, z_star, decrement), grad


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _subject_terms(model, method, pop, data):
    return _subject_impl(model, method, pop, data, False)[0]


def _subject_terms_fwd(model, method, pop, data):
    return _subject_impl(model, method, pop, data, True)


def _subject_terms_bwd(model, method, grad, cts):
    ct = cts[0]  # the ETA mode and the decrement are not differentiated
    return jax.tree_util.tree_map(lambda x: ct * x, grad), None


_subject_terms.defvjp(_subject_terms_fwd, _subject_terms_bwd)


def _terms(model, method, theta, sds, corr, arrays: _Arrays):
    r"""Per subject: log m (n_id,), ETA mode (n_id, k), converged (n_id,); differentiable
    (reverse mode, first order) in ``theta``, ``sds`` and ``corr``."""
    k = len(model.eta_names)
    n_id = arrays.obs_mask.shape[0]
    data = (arrays.covariates, arrays.doses, arrays.obs_time, arrays.obs_dv, arrays.obs_mask)
    if k == 0:

        def plain(d):
            cov, doses, times, dv, mask = d
            return _subject_loglik(model, theta, jnp.zeros(0), cov, doses, times, dv, mask)

        log_m = jax.vmap(plain)(data)
        return log_m, jnp.zeros((n_id, 0)), jnp.ones(n_id, dtype=bool)
    chol = sds[:, None] * jnp.linalg.cholesky(corr)
    log_m, z, decrement = jax.vmap(lambda d: _subject_terms(model, method, (theta, chol), d))(data)
    converged = jnp.isfinite(log_m) & (decrement < _NEWTON_CONVERGED)
    return log_m, z @ chol.T, converged


@functools.partial(jax.jit, static_argnums=(0, 1))
def _evaluate(model, method, theta, sds, corr, arrays: _Arrays):
    """-2 sum log m, its gradient in (theta, sds, corr), and (log m, ETA modes, converged).

    The one compiled program per model, method and data shapes: every OFV, gradient and
    fit evaluation uses it, so a model compiles once per process. Computing the gradient
    when only the value is needed costs little run time and saves compiling a second,
    value-only program (compilation dominates: seconds, against milliseconds per call).
    """

    def total(theta, sds, corr):
        log_m, eta, converged = _terms(model, method, theta, sds, corr, arrays)
        return -2.0 * jnp.sum(log_m), (log_m, eta, converged)

    (val, aux), grads = jax.value_and_grad(total, argnums=(0, 1, 2), has_aux=True)(theta, sds, corr)
    return val, grads, aux


def _n_obs_subject(arrays: _Arrays) -> np.ndarray:
    return np.asarray(arrays.obs_mask).sum(axis=1)


# --------------------------------------------------------------------------- public API
_METHODS = ("laplace", "focei")


def _check_method(method: str) -> str:
    if method not in _METHODS:
        raise ModelError(f"method must be one of {list(_METHODS)}; got {method!r}.")
    return method


def ofv_function(model, data, *, method: str = "laplace", constant: bool = False):
    r"""The OFV of ``model`` on ``data`` as a differentiable JAX function of the parameters.

    Parameters
    ----------
    model : Model
        The population model.
    data : Dataset, pandas.DataFrame or path
        The NONMEM-style dataset (read with :func:`bayes_nlme.read_nonmem` if not a Dataset).
    method : {"laplace", "focei"}, default "laplace"
        The approximation of :func:`laplace_ofv` or of :func:`focei_ofv`.
    constant : bool, default False
        Include :math:`N_\mathrm{obs} \log 2\pi` (see :func:`laplace_ofv`).

    Returns
    -------
    callable ``f(params) -> jax.Array`` (scalar)
        The OFV as a JAX function of the ``params`` dict of :func:`laplace_ofv` (names the
        model does not declare are ignored). Compiled once per model, method and data
        shape (shared with :func:`laplace_ofv`, :func:`focei_ofv` and :func:`map_fit`).
        Works under ``jax.jit`` and ``jax.vmap``, and with reverse-mode ``jax.grad``: the
        gradient is exact (implicit-function theorem at each subject's ETA mode), but
        forward-mode derivatives (``jax.jacfwd``, ``jax.hessian``) are not available.

    Raises
    ------
    ModelError
        When ``data`` do not fit the model (here) or ``params`` lacks a parameter (when
        ``f`` is called).

    Examples
    --------
    >>> f = bn.diagnostics.ofv_function(model, ds)  # doctest: +SKIP
    >>> jax.grad(f)(params)["tvcl"]  # doctest: +SKIP
    """
    _check_method(method)
    _, arrays = _prepare(model, data)
    offset = 0.0 if constant else -float(_n_obs_subject(arrays).sum()) * LOG_2PI

    @jax.custom_vjp
    def ofv(theta, sds, corr):
        return _evaluate(model, method, theta, sds, corr, arrays)[0] + offset

    def ofv_fwd(theta, sds, corr):
        val, grads, _ = _evaluate(model, method, theta, sds, corr, arrays)
        return val + offset, grads

    def ofv_bwd(grads, ct):
        return jax.tree_util.tree_map(lambda g: ct * g, grads)

    ofv.defvjp(ofv_fwd, ofv_bwd)

    def f(params):
        return ofv(*_unpack(model, params, check_values=False))

    return f


def _ofv(model, data, params, method, constant) -> OFVResult:
    ds, arrays = _prepare(model, data)
    theta, sds, corr = _unpack(model, params, check_values=True)
    _, _, (log_m, eta, converged) = _evaluate(model, method, theta, sds, corr, arrays)
    n_i = _n_obs_subject(arrays)
    ofv_subject = -2.0 * np.asarray(log_m, dtype=float) - (0.0 if constant else n_i * LOG_2PI)
    converged = np.asarray(converged, dtype=bool)
    if not converged.all():
        warnings.warn(
            "The ETA mode search did not converge for subjects "
            f"{ds.ids[~converged].tolist()}; their contribution to the OFV is unreliable.",
            RuntimeWarning,
            stacklevel=3,
        )
    ofv = float(np.sum(ofv_subject))
    p = _n_params(model)
    return OFVResult(
        ofv=ofv,
        n_obs=ds.n_obs,
        n_id=ds.n_id,
        n_params=p,
        aic=ofv + 2.0 * p,
        bic=ofv + p * math.log(ds.n_id),
        eta_mode=np.asarray(eta),
        converged=converged,
        ofv_subject=ofv_subject,
    )


def laplace_ofv(model, data, params: Mapping, *, constant: bool = False) -> OFVResult:
    r"""Objective function value (-2 log likelihood) with ETAs integrated by Laplace's method.

    For fixed population parameters (THETA, OMEGA, residual error), each subject's marginal
    likelihood :math:`m_i = \int p(y_i \mid \eta)\, \mathcal N(\eta; 0, \Omega)\, d\eta` is
    approximated at the mode :math:`\hat\eta_i` of its log integrand

    .. math::

        l_i(\eta) = \sum_{j} \log p(y_{ij} \mid \eta, \theta) + \log \mathcal N(\eta; 0, \Omega),
        \qquad \Omega = \operatorname{diag}(\omega)\, R\, \operatorname{diag}(\omega),

    .. math::

        \log m_i \approx l_i(\hat\eta_i) + \frac{k}{2}\log 2\pi
            - \frac12 \log\det\big(-\nabla^2 l_i(\hat\eta_i)\big),

    with the exact Hessian (automatic differentiation) and :math:`k` ETAs per subject, and

    .. math::

        \mathrm{OFV} = -2 \sum_{i=1}^{n_\mathrm{id}} \log m_i
            \;-\; N_\mathrm{obs} \log 2\pi \quad (\text{last term only if } constant=False).

    This is NONMEM's ``METHOD=COND LAPLACIAN INTERACTION`` objective. It is not FOCE-I's:
    FOCE-I replaces the Hessian by its first-order (Gauss-Newton) form, see
    :func:`focei_ofv`. On Theophylline at NONMEM's FOCE-I estimates the Laplace OFV is
    118.53, FOCE-I's 116.80 (NONMEM: 116.803) and the exact marginal likelihood (3-D
    quadrature) 118.12. Without IIV (``model.random`` None) the OFV is the plain
    :math:`-2 \log L`.

    The mode is found per subject (vectorised with ``jax.vmap``) by a modified Newton method
    with backtracking line search from :math:`\eta = 0`; subjects where it does not converge
    are flagged in ``converged`` and a ``RuntimeWarning`` names them.

    Parameters
    ----------
    model : Model
        The population model.
    data : Dataset, pandas.DataFrame or path
        The NONMEM-style dataset (read with :func:`bayes_nlme.read_nonmem` if not a Dataset).
    params : dict
        Population parameters on the natural scale: every name of ``model.params`` (THETA
        and residual-error parameters, e.g. ``tvcl`` in L/h, ``add_sd`` in DV units), the
        SD of each ETA as ``omega_<eta>_sd`` (:math:`\omega = \sqrt{\mathrm{OMEGA}}`, log
        scale for log-normal parameters) and, for a block OMEGA, ``omega_corr``, the
        correlation matrix, shape (k, k), in ``model.eta_names`` order. These are the names
        of :meth:`Model.population_names` and of the posterior of :func:`bayes_nlme.fit`.
        Other names are ignored.
    constant : bool, default False
        False (default): the NONMEM convention. NONMEM reports -2 log likelihood without the
        constant :math:`N_\mathrm{obs} \log 2\pi` of the normal densities, and so does this
        OFV (the term is subtracted whatever the error model). True: the full
        :math:`-2 \log L` (as R's ``logLik``/``AIC`` or nlmixr2 report it), larger by exactly
        :math:`N_\mathrm{obs} \log 2\pi` (242.6 for 132 observations).

    Returns
    -------
    OFVResult
        ``ofv``, ``n_obs``, ``n_id``, ``n_params`` (:math:`p`), ``aic``
        (:math:`\mathrm{OFV} + 2p`), ``bic`` (:math:`\mathrm{OFV} + p \log n_\mathrm{id}`),
        ``eta_mode`` (n_id, k), ``converged`` (n_id,) and ``ofv_subject`` (n_id,).

    Raises
    ------
    ModelError
        If ``params`` lacks a parameter of the model (all missing names are listed), has a
        non-scalar or non-finite value, a negative OMEGA SD or an invalid ``omega_corr``; or
        the data do not fit the model (no observations, missing covariates, DV <= 0 with
        exponential error).

    Notes
    -----
    *Parameter count.* :math:`p` counts every ``Param`` of the model (THETA and residual
    error), one SD per ETA and, for a block OMEGA, the :math:`k(k-1)/2` correlations; all
    are taken as estimated (there are no fixed parameters).

    *BIC* uses :math:`\log n_\mathrm{id}`, the number of subjects (the independent units of
    a population model, as in Monolix), not :math:`\log N_\mathrm{obs}` as some tools do.

    *Error models on other scales.* The likelihood is always that of DV. With exponential
    error (log-normal DV) NONMEM is usually run on log-transformed data (LTBS), whose OFV is
    smaller by :math:`2\sum \log \mathrm{DV}` (the Jacobian of the log): compare
    ``ofv - 2 * sum(log(DV))`` with such a run.

    *Accuracy.* Laplace's method is exact when the integrand is Gaussian in :math:`\eta`;
    its error shrinks like :math:`1/n_i` with a subject's number of observations. Sparse
    data with strongly nonlinear models can be off by several OFV units, as with FOCE.

    References
    ----------
    Beal SL, Sheiner LB, Boeckmann AJ, Bauer RJ. NONMEM 7.4 Users Guides. ICON, 2018
    (Introduction to NONMEM 7: conditional estimation methods, LAPLACIAN).
    Wang Y. Derivation of various NONMEM estimation methods. J Pharmacokinet Pharmacodyn
    2007;34:575-593.

    Examples
    --------
    >>> import bayes_nlme as bn
    >>> from bayes_nlme.model_zoo.theophylline import model
    >>> ds = bn.read_nonmem(bn.datasets.load("theophylline"))  # doctest: +SKIP
    >>> nonmem = dict(tvka=1.59, tvcl=2.751, tvv=31.81, add_sd=0.694, omega_ka_sd=0.402**0.5,
    ...               omega_cl_sd=0.0691**0.5, omega_v_sd=0.0192**0.5)
    >>> round(bn.diagnostics.laplace_ofv(model, ds, nonmem).ofv, 2)  # doctest: +SKIP
    118.53
    """
    return _ofv(model, data, params, "laplace", constant)


def focei_ofv(model, data, params: Mapping, *, constant: bool = False) -> OFVResult:
    r"""Objective function value by NONMEM's FOCE-I (first-order conditional, interaction).

    As :func:`laplace_ofv`, at the same ETA modes :math:`\hat\eta_i`, but each subject's
    integral uses the linearisation of NONMEM's FOCE with interaction: predictions
    :math:`f(\eta) \approx f(\hat\eta) + J(\eta - \hat\eta)` (:math:`J = \partial f /
    \partial \eta` at the mode), residual SDs :math:`s_j` fixed at their values at the mode,

    .. math::

        -2 \log m_i = n_i \log 2\pi + \log\det C_i + v_i^\top C_i^{-1} v_i,
        \qquad C_i = J \Omega J^\top + \operatorname{diag}(s_j^2),\quad
        v_i = y_i - f(\hat\eta_i) + J \hat\eta_i ,

    the exact :math:`-2 \log` density of :math:`y_i` under the linearised model
    (:math:`n_i` observations).

    For additive error this equals the Laplace formula with the Gauss-Newton Hessian
    :math:`\Omega^{-1} + J^\top \Sigma^{-1} J` (Wang 2007). It reproduces NONMEM 7.4.4's
    FOCE-I OFV on Theophylline at its final estimates (116.80 vs 116.803). Use it to compare
    with NONMEM runs; :func:`laplace_ofv` is the more accurate approximation of the
    marginal likelihood.

    Parameters, return value and constant convention are those of :func:`laplace_ofv`.
    Normal residual models only (additive, proportional, combined) and exponential error,
    which is linearised on the log scale (NONMEM's log-transform-both-sides) and reported on
    the DV scale (add :math:`-2\sum\log \mathrm{DV}` to compare with an LTBS run).

    Raises
    ------
    ModelError
        As :func:`laplace_ofv`; also for a residual distribution that is neither normal nor
        log-normal.

    References
    ----------
    Wang Y. Derivation of various NONMEM estimation methods. J Pharmacokinet Pharmacodyn
    2007;34:575-593 (FOCE with interaction).
    """
    return _ofv(model, data, params, "focei", constant)


# --------------------------------------------------------------------------- MAP fit
def _prior_median(prior: dist.Distribution, key) -> float:
    """Median of 1001 prior draws (deterministic: fixed key; as ``init_to_typical``)."""
    return float(np.median(np.asarray(prior.sample(key, (1001,)))))


class _Packing:
    """Flat unconstrained vector <-> natural-scale population parameters (and priors)."""

    def __init__(self, model):
        self.model = model
        self.priors = {n: p.prior for n, p in model.params.items() if not p.is_fixed}
        self.fixed = model.fixed_values()
        for e in model.eta_names:
            if f"omega_{e}_sd" not in self.fixed:
                self.priors[f"omega_{e}_sd"] = model.random.sd_prior(e)
        self.scalar_names = list(self.priors)
        self.transforms = {n: biject_to(p.support) for n, p in self.priors.items()}
        self.k = len(model.eta_names)
        self.block = model.random is not None and model.random.corr is not None
        # the bijection of the prior's support: block-diagonal OMEGA (IIV(blocks=...)) maps
        # only the within-block correlations, sum of d_b (d_b - 1) / 2 coordinates
        corr_prior = model.random.corr_prior() if self.block else None
        self.corr_transform = biject_to(corr_prior.support) if self.block else None
        self.n_corr = self.corr_transform.inverse_shape((self.k, self.k))[-1] if self.block else 0

    def natural(self, u) -> dict:
        out = {name: self.transforms[name](u[i]) for i, name in enumerate(self.scalar_names)}
        out.update({n: jnp.asarray(v, dtype=float) for n, v in self.fixed.items()})
        if self.block:
            n = len(self.scalar_names)
            L = self.corr_transform(u[n : n + self.n_corr])
            out["omega_corr"] = L @ L.T
        return out

    def unconstrained(self, values: Mapping) -> dict:
        out = {
            n: jnp.atleast_1d(self.transforms[n].inv(jnp.asarray(values[n], dtype=float)))
            for n in self.scalar_names
        }
        if self.block:
            L = jnp.linalg.cholesky(jnp.asarray(values["omega_corr"], dtype=float))
            out["omega_corr"] = self.corr_transform.inv(L)
        return out

    def log_prior(self, values: Mapping):
        lp = sum(self.priors[n].log_prob(values[n]) for n in self.scalar_names)
        if self.block:
            lkj = self.model.random.corr_prior()
            corr = dist.LKJ(lkj.dimension, concentration=lkj.concentration)
            lp = lp + corr.log_prob(values["omega_corr"])
        return lp


@functools.partial(jax.jit, static_argnums=(0,))
def _natural(model, u):
    """Unconstrained vector -> (theta, OMEGA SDs, correlation matrix), with its VJP."""
    pack = _Packing(model)
    return _unpack(model, pack.natural(u), check_values=False)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _map_u_side(model, prior, u, grads):
    """Objective terms on the unconstrained scale: (-log prior or 0, gradient in ``u`` of
    ``OFV/2 - log prior`` given the OFV's gradient ``grads`` in (theta, sds, corr))."""
    pack = _Packing(model)

    def split(u):
        values = pack.natural(u)
        lp = pack.log_prior(values) if prior else jnp.zeros(())
        return _unpack(model, values, check_values=False), lp

    (_, lp), vjp = jax.vjp(split, u)
    cts = jax.tree_util.tree_map(lambda g: 0.5 * g, grads)
    (grad_u,) = vjp((cts, -jnp.ones_like(lp)))
    return -lp, grad_u


def _bfgs(fg, x0, maxiter: int, gtol: float):
    r"""Minimise with BFGS (inverse-Hessian update, backtracking Armijo line search).

    ``fg(x) -> (f, grad)`` as NumPy values. Non-finite trial values are rejected by the line
    search; an update whose curvature :math:`s^\top y` is not positive is skipped, so the
    inverse Hessian stays positive definite. Returns (x, f, g, converged, n_iter).
    """
    x = np.asarray(x0, dtype=float)
    f, g = fg(x)
    if not np.isfinite(f) or not np.all(np.isfinite(g)):
        raise ModelError(
            "The objective is not finite at the starting values; give other values in init."
        )
    n = x.size
    Hinv = np.eye(n)
    first = True
    for it in range(maxiter):
        if np.max(np.abs(g)) < gtol:
            return x, f, g, True, it
        p = -Hinv @ g
        slope = g @ p
        if not slope < 0:
            Hinv, p = np.eye(n), -g
            slope = g @ p
        t = min(1.0, 1.0 / np.max(np.abs(p))) if first else 1.0
        for _ in range(50):
            x_new = x + t * p
            f_new, g_new = fg(x_new)
            if np.isfinite(f_new) and np.all(np.isfinite(g_new)) and f_new <= f + 1e-4 * t * slope:
                break
            t *= 0.5
        else:
            return x, f, g, False, it
        s, y = x_new - x, g_new - g
        sy = s @ y
        if sy > 1e-12 * np.linalg.norm(s) * np.linalg.norm(y):
            if first:
                Hinv = np.eye(n) * (sy / (y @ y))
                first = False
            rho = 1.0 / sy
            V = np.eye(n) - rho * np.outer(s, y)
            Hinv = V @ Hinv @ V.T + rho * np.outer(s, s)
        x, f, g = x_new, f_new, g_new
    return x, f, g, bool(np.max(np.abs(g)) < gtol), maxiter


def map_fit(
    model,
    data,
    *,
    method: str = "laplace",
    prior: bool = True,
    init: Mapping | None = None,
    maxiter: int = 500,
    gtol: float = 1e-5,
) -> MAPResult:
    r"""Population estimates maximising the Laplace (or FOCE-I) likelihood or posterior.

    Maximises, over the population parameters :math:`\phi` (THETA and residual-error
    parameters, OMEGA SDs and, for a block OMEGA, its correlations),

    .. math::

        -\tfrac12\,\mathrm{OFV}(\phi) \;+\; [\text{prior}]\; \log p(\phi),

    with the OFV of :func:`laplace_ofv` (or :func:`focei_ofv`). ``prior=False`` gives the
    maximum likelihood estimate (NONMEM ``METHOD=COND LAPLACIAN``, or ``METHOD=COND
    INTERACTION`` with ``method="focei"``); ``prior=True`` adds the log prior density of every
    ``Param``, of every OMEGA SD and, for a block OMEGA, the LKJ density of the correlation
    matrix, all on the natural scale: the posterior mode of the declared parameters with the
    ETAs integrated out.

    The search runs on the unconstrained scale (each parameter through the bijection of its
    prior's support, ``numpyro.distributions.biject_to``; the correlation matrix through its
    Cholesky factor) with BFGS and exact gradients (implicit-function theorem at each
    subject's ETA mode). It starts at the prior medians (as :func:`bayes_nlme.fit` does) and
    an identity correlation matrix; every evaluation searches the ETA modes from 0.

    Parameters
    ----------
    model : Model
        The population model.
    data : Dataset, pandas.DataFrame or path
        The NONMEM-style dataset.
    method : {"laplace", "focei"}, default "laplace"
        The OFV approximation.
    prior : bool, default True
        Add the log prior density (MAP); False gives the maximum likelihood estimate.
    init : dict, optional
        Starting values on the natural scale for some or all parameters (names as in
        :func:`laplace_ofv`); the others start at their prior medians.
    maxiter : int, default 500
        Maximum number of BFGS iterations.
    gtol : float, default 1e-5
        Convergence tolerance on the largest absolute gradient of the objective
        (:math:`\mathrm{OFV}/2` minus the log prior) on the unconstrained scale.

    Returns
    -------
    MAPResult
        ``params`` (natural scale), ``ofv`` (of ``method``, NONMEM convention, at the
        estimates), ``aic``, ``bic``, ``converged``, ``n_iter``.

    Raises
    ------
    ModelError
        If ``init`` names a parameter the model does not have or a value outside the
        support of its prior, the objective is not finite at the start, or the data do not
        fit the model.

    Notes
    -----
    A local optimiser: for oral models, a start in the flip-flop basin (KA below CL/V)
    converges there. When ``converged`` is False, try other ``init`` values or a larger
    ``maxiter``; the returned point is the last iterate.

    Examples
    --------
    >>> fit = bn.diagnostics.map_fit(model, ds, prior=False)  # doctest: +SKIP
    >>> fit.params["tvcl"], fit.ofv  # doctest: +SKIP
    """
    _check_method(method)
    ds, arrays = _prepare(model, data)
    pack = _Packing(model)
    keys = jax.random.split(jax.random.PRNGKey(0), len(pack.scalar_names))
    start = {
        n: _prior_median(pack.priors[n], key)
        for n, key in zip(pack.scalar_names, keys, strict=True)
    }
    if pack.block:
        start["omega_corr"] = np.eye(pack.k)
    if init:
        unknown = sorted(set(init) - set(start))
        if unknown:
            raise ModelError(
                f"init names {unknown}, which the model does not have; its parameters are "
                f"{sorted(start)}."
            )
        start.update(init)
    _unpack(model, start, check_values=True)
    parts = pack.unconstrained(start)
    outside = [n for n, v in parts.items() if not np.all(np.isfinite(np.asarray(v)))]
    if outside:
        raise ModelError(f"init values outside the support of their priors: {outside}.")
    u0 = np.concatenate([np.asarray(v) for v in parts.values()])

    def fg(u):
        u = jnp.asarray(u)
        theta, sds, corr = _natural(model, u)
        ofv, grads, _ = _evaluate(model, method, theta, sds, corr, arrays)
        neg_lp, grad_u = _map_u_side(model, bool(prior), u, grads)
        return 0.5 * float(ofv) + float(neg_lp), np.asarray(grad_u)

    u, _, _, bfgs_ok, n_iter = _bfgs(fg, u0, maxiter, gtol)
    values = pack.natural(jnp.asarray(u))
    params = {n: float(values[n]) for n in pack.scalar_names}
    if pack.block:
        params["omega_corr"] = np.asarray(values["omega_corr"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        final = _ofv(model, ds, params, method, False)
    return MAPResult(
        params=params,
        ofv=final.ofv,
        aic=final.aic,
        bic=final.bic,
        converged=bfgs_ok and bool(final.converged.all()),
        n_iter=n_iter,
    )
