"""The population model: declarations + one-subject statements -> a plain NumPyro model."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from .._errors import ModelError
from ..data._dataset import Dataset, Doses
from ..pk._base import AbstractPKModel
from ._error import AbstractError
from ._params import IIV, Param

__all__ = ["Model", "ModelData", "Namespace"]


class Namespace(Mapping):
    """Read-only attribute access to named values (``p.tvcl``, ``eta.cl``, ``cov.WT``).

    Unknown names raise an error that lists the available ones.
    """

    def __init__(self, kind: str, values: Mapping[str, Any]):
        object.__setattr__(self, "_kind", kind)
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise ModelError(
                f"{self._kind} has no {name!r}; available: "
                f"{', '.join(sorted(self._values)) or 'none'}."
            ) from None

    def __setattr__(self, name, value):
        raise AttributeError(f"{self._kind} is read-only")

    def __getitem__(self, name):
        return self.__getattr__(name)

    def __iter__(self):
        return iter(self._values)

    def __len__(self):
        return len(self._values)

    def __repr__(self):
        return f"{self._kind}({', '.join(self._values)})"


class ModelData(NamedTuple):
    """The arrays a compiled model needs (a JAX pytree; built by :meth:`Model.model_data`).

    Attributes
    ----------
    dose_time, dose_amt, dose_rate, dose_cmt, dose_mask : arrays, shape (n_id, n_dose_max)
    obs_time : array, shape (n_id, n_obs_max)
        Times at which the model is evaluated for each subject.
    obs_subject, obs_slot : int arrays, shape (n_obs,)
        Position of each entry of the flat ``obs`` vector in the padded ``obs_time``.
    covariates : dict of str to array, shape (n_id,)
        The covariates the model declares.
    dose_ss, dose_ii : arrays, shape (n_id, n_dose_max), or None
        Steady-state flag (int) and interval of each dose (see :class:`bayes_nlme.data.Doses`).
        :meth:`Model.model_data` leaves both None when the dataset has no steady-state dose,
        which keeps the structural model on its path without steady-state terms.
    """

    dose_time: Any
    dose_amt: Any
    dose_rate: Any
    dose_cmt: Any
    dose_mask: Any
    obs_time: Any
    obs_subject: Any
    obs_slot: Any
    covariates: dict
    dose_ss: Any = None
    dose_ii: Any = None

    @property
    def doses(self) -> Doses:
        """All subjects' dose events as one :class:`Doses` (fields (n_id, n_dose_max))."""
        return Doses(
            self.dose_time,
            self.dose_amt,
            self.dose_rate,
            self.dose_cmt,
            self.dose_mask,
            self.dose_ss,
            self.dose_ii,
        )

    @property
    def n_id(self) -> int:
        return self.dose_time.shape[0]

    @property
    def n_obs(self) -> int:
        return self.obs_subject.shape[0]


def _check_identifier_names(names: Sequence[str], what: str) -> None:
    bad = sorted(n for n in names if not str(n).isidentifier())
    if bad:
        raise ModelError(f"{what} names must be Python identifiers; got {bad}.")


class Model:
    """A hierarchical NLME model, read top to bottom in data-flow order.

    ``params`` (THETA and residual SDs, with priors) and ``random`` (IIV) are declarations;
    ``pre`` (individual parameters for ONE subject), ``dynamics`` (the structural model) and
    ``derived`` (the error model for ONE subject) are statements. The model compiles to a
    plain NumPyro model, :meth:`numpyro_model`, with plates named ``ID`` and ``obs``.

    Parameters
    ----------
    params : dict of str to Param
        Population parameters, e.g. ``tvcl=bn.Param(dist.LogNormal(jnp.log(3), 1), unit="L/h")``.
        Each becomes a NumPyro sample site of the same name.
    random : IIV, optional
        Random effects. ``eta.<name>`` in ``pre``; ``eta_<name>`` and ``omega_<name>_sd`` in
        the results. Omit for a model without IIV.
    pre : callable ``pre(p, eta, cov) -> dict``
        One-subject individual parameters from typical values ``p`` (``p.tvcl``, scalars), the
        subject's ETAs ``eta`` (``eta.cl``, scalars) and baseline covariates ``cov``
        (``cov.WT``, scalars). Must return every name ``dynamics.required`` lists; any extra
        names (e.g. ``F1``, ``ALAG1``, or derived quantities) are kept and reported.
    dynamics : AbstractPKModel
        The structural model, e.g. ``bn.pk.Depots1Central1()``.
    derived : callable ``derived(p, amounts, ind) -> dict``
        One-subject observation model: ``amounts.<Compartment>`` are arrays of shape
        ``(n_obs_max,)`` at the subject's observation times (``amounts.t`` holds the times),
        ``ind`` the individual parameters. Returns ``{"DV": error_model}`` with an error model
        from :mod:`bayes_nlme.error` whose ``ipred`` is the prediction of DV.
    covariates : sequence of str, optional
        Dataset columns ``pre`` uses (baseline value per subject). Matched case-insensitively.
    name : str, optional
        Name used in reports.

    Raises
    ------
    ModelError
        If a declaration is malformed (non-identifier names, a name declared twice, a missing
        callable). Problems that need the data (missing covariates, missing parameters returned
        by ``pre``) are raised by :func:`bayes_nlme.fit` before sampling.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import bayes_nlme as bn
    >>> from bayes_nlme import dist
    >>> model = bn.Model(
    ...     params=dict(
    ...         tvka=bn.Param(dist.LogNormal(jnp.log(1.5), 1.0), unit="1/h"),
    ...         tvcl=bn.Param(dist.LogNormal(jnp.log(3.0), 1.0), unit="L/h"),
    ...         tvv=bn.Param(dist.LogNormal(jnp.log(30.0), 1.0), unit="L"),
    ...         add_sd=bn.Param(dist.HalfNormal(1.0), unit="mg/L"),
    ...     ),
    ...     random=bn.IIV(["ka", "cl", "v"], sd=dist.HalfNormal(0.5)),
    ...     pre=lambda p, eta, cov: dict(KA=p.tvka * jnp.exp(eta.ka),
    ...                                  CL=p.tvcl * jnp.exp(eta.cl),
    ...                                  V=p.tvv * jnp.exp(eta.v)),
    ...     dynamics=bn.pk.Depots1Central1(),
    ...     derived=lambda p, a, ind: dict(DV=bn.error.Additive(a.Central / ind.V, sd=p.add_sd)),
    ... )
    """

    def __init__(
        self,
        params: Mapping[str, Param],
        *,
        random: IIV | None = None,
        pre: Callable,
        dynamics: AbstractPKModel,
        derived: Callable,
        covariates: Sequence[str] = (),
        name: str | None = None,
    ):
        if not isinstance(params, Mapping) or not params:
            raise ModelError("Model(params=...) must be a non-empty dict of name -> bn.Param.")
        not_param = sorted(k for k, v in params.items() if not isinstance(v, Param))
        if not_param:
            raise ModelError(
                f"Model params must be bn.Param(...) declarations; not so for {not_param}."
            )
        _check_identifier_names(list(params), "Parameter")
        if random is not None and not isinstance(random, IIV):
            raise ModelError(f"Model(random=...) takes bn.IIV(...) or None; got {random!r}.")
        if not isinstance(dynamics, AbstractPKModel):
            raise ModelError(
                "Model(dynamics=...) takes a structural model such as bn.pk.Depots1Central1(); "
                f"got {dynamics!r}."
            )
        for what, fn in (("pre", pre), ("derived", derived)):
            if not callable(fn):
                raise ModelError(f"Model({what}=...) must be a function; got {fn!r}.")
        self.params = dict(params)
        self.random = random
        self.pre = pre
        self.dynamics = dynamics
        self.derived = derived
        self.covariates = tuple(covariates)
        self.name = name or "model"
        clash = sorted(set(self.params) & set(self.random_site_names()))
        if clash:
            raise ModelError(f"Parameter names clash with random-effect sites: {clash}.")

    # ------------------------------------------------------------------ names
    @property
    def eta_site(self) -> str:
        """Name of the per-subject random-effect sample site (plate ``ID``, shape
        (n_id, n_eta)): ``z_eta`` (non-centred, standard normal) or ``eta_centered``."""
        return "eta_centered" if self.random is not None and self.random.centered else "z_eta"

    @property
    def eta_names(self) -> tuple[str, ...]:
        """Names of the random effects (empty without IIV)."""
        return tuple(self.random.names) if self.random is not None else ()

    def omega_sd_names(self) -> list[str]:
        """``omega_<name>_sd`` for each random effect."""
        return [f"omega_{n}_sd" for n in self.eta_names]

    def random_site_names(self) -> list[str]:
        names = self.omega_sd_names()
        if self.random is not None and self.random.corr is not None:
            names.append("omega_corr_chol")
        return names

    def population_names(self) -> list[str]:
        """Population-level posterior variables: THETA, OMEGA SDs (and ``omega_corr``)."""
        names = list(self.params) + self.omega_sd_names()
        if self.random is not None and self.random.corr is not None:
            names.append("omega_corr")
        return names

    def units(self) -> dict[str, str]:
        """Unit of each population parameter that declares one."""
        return {k: v.unit for k, v in self.params.items() if v.unit}

    def __repr__(self) -> str:
        return (
            f"Model({self.name!r}: params {list(self.params)}, IIV {list(self.eta_names)}, "
            f"dynamics {self.dynamics!r}, covariates {list(self.covariates)})"
        )

    # ------------------------------------------------------------------ data
    def model_data(self, data: Dataset, times: np.ndarray | None = None) -> ModelData:
        """Arrays for :meth:`numpyro_model`, checked against this model.

        Parameters
        ----------
        data : Dataset
            From :func:`bayes_nlme.read_nonmem`.
        times : ndarray, shape (n_id, n_time), optional
            Evaluate the model at these times instead of the observation times (every entry
            becomes an element of ``obs``); used for prediction curves.

        Raises
        ------
        ModelError
            If a declared covariate is absent from the dataset or missing for some subjects.
        """
        covs = {}
        by_lower = {k.lower(): k for k in data.covariates}
        missing = [c for c in self.covariates if c.lower() not in by_lower]
        if missing:
            raise ModelError(
                f"The model uses covariates {missing} that the dataset lacks; dataset "
                f"covariate columns: {sorted(data.covariates) or 'none'}. Add the column or "
                "remove the name from Model(covariates=...)."
            )
        for c in self.covariates:
            values = np.asarray(data.covariates[by_lower[c.lower()]], dtype=float)
            nan = np.isnan(values)
            if nan.any():
                raise ModelError(
                    f"Covariate {c!r} is missing (NaN) on the first record of subjects "
                    f"{data.ids[nan].tolist()}. Fill it in the dataset (baseline value on each "
                    "subject's first row) or drop those subjects."
                )
            covs[c] = jnp.asarray(values)
        if np.any(data.dose_mask & (data.dose_rate < 0)):
            self._check_modeled_rates(data)
        if times is None:
            obs_time = data.obs_time
            subject, slot = data.obs_index
        else:
            obs_time = np.asarray(times, dtype=float)
            if obs_time.ndim != 2 or obs_time.shape[0] != data.n_id:
                raise ModelError(
                    f"times must have shape (n_id={data.n_id}, n_time); got {obs_time.shape}."
                )
            subject, slot = np.nonzero(np.ones(obs_time.shape, dtype=bool))
        has_ss = bool(np.any((np.asarray(data.dose_ss) > 0) & np.asarray(data.dose_mask, bool)))
        return ModelData(
            dose_time=jnp.asarray(data.dose_time, dtype=float),
            dose_amt=jnp.asarray(data.dose_amt, dtype=float),
            dose_rate=jnp.asarray(data.dose_rate, dtype=float),
            dose_cmt=jnp.asarray(data.dose_cmt, dtype=jnp.int32),
            dose_mask=jnp.asarray(data.dose_mask, dtype=bool),
            obs_time=jnp.asarray(obs_time, dtype=float),
            obs_subject=jnp.asarray(subject, dtype=jnp.int32),
            obs_slot=jnp.asarray(slot, dtype=jnp.int32),
            covariates=covs,
            dose_ss=jnp.asarray(data.dose_ss, dtype=jnp.int32) if has_ss else None,
            dose_ii=jnp.asarray(data.dose_ii, dtype=float) if has_ss else None,
        )

    def _check_modeled_rates(self, data: Dataset) -> None:
        """RATE -1/-2 doses need ``R<n>``/``D<n>`` from ``pre``: say so before sampling
        (under vmap a missing one would only show up as impossible proposals)."""
        from ..pk._analytic import _modeled_rate_problem

        names = dict.fromkeys(self._probe()[0], 1.0)
        problem = _modeled_rate_problem(
            names,
            data.dose_cmt.ravel(),
            data.dose_rate.ravel(),
            data.dose_mask.ravel(),
            self.dynamics.default_dose_cmt,
        )
        if problem is not None:
            raise ModelError(f"{problem} Return it from pre(p, eta, cov).")

    # ------------------------------------------------------------------ one subject
    def subject(self, theta: Mapping, eta: Mapping, cov: Mapping, doses: Doses, times):
        """Individual parameters and error model for ONE subject (see :meth:`subject_status`).

        Returns
        -------
        ind, outputs
            As :meth:`subject_status`, without the solver flag.
        """
        ind, out, _ = self.subject_status(theta, eta, cov, doses, times)
        return ind, out

    def subject_status(self, theta: Mapping, eta: Mapping, cov: Mapping, doses: Doses, times):
        """Individual parameters and error model for ONE subject.

        Parameters
        ----------
        theta : mapping of str to scalar
            Population parameters.
        eta : mapping of str to scalar
            This subject's random effects.
        cov : mapping of str to scalar
            This subject's baseline covariates.
        doses : Doses
            This subject's dose events, fields of shape (n_dose_max,).
        times : array, shape (n_time,)
            Evaluation times.

        Returns
        -------
        ind : dict of str to scalar
            Individual parameters returned by ``pre``.
        outputs : dict of str to AbstractError
            The error model of each observed variable, fields of shape (n_time,).
        ok : bool scalar
            False when an ODE solve failed (the amounts are then placeholders of 1.0, so that
            no NaN reaches values or gradients); always True for analytic models.
        """
        p = Namespace("p (population parameters)", theta)
        ind = self.pre(p, Namespace("eta", eta), Namespace("cov (covariates)", cov))
        if not isinstance(ind, Mapping):
            raise ModelError(f"pre(p, eta, cov) must return a dict; got {type(ind).__name__}.")
        missing = [k for k in self.dynamics.required if k not in ind]
        if missing:
            raise ModelError(
                f"pre(p, eta, cov) must return {list(self.dynamics.required)} for "
                f"{self.dynamics!r}; missing {missing} (returned {sorted(ind)})."
            )
        ind = {k: jnp.asarray(v, dtype=float) for k, v in ind.items()}
        solve = getattr(self.dynamics, "solve_status", None)
        if solve is None:  # analytic models cannot fail
            amounts, ok = self.dynamics.amounts(ind, doses, times), jnp.asarray(True)
        else:  # ODE: a failed solve gives NaN amounts; keep NaN out of values and gradients
            amounts, ok = solve(ind, doses, times)
            amounts = jnp.where(ok, amounts, 1.0)
        a = dict(zip(self.dynamics.compartments, jnp.moveaxis(amounts, -1, 0), strict=True))
        a["t"] = times
        out = self.derived(
            p, Namespace("amounts", a), Namespace("ind (individual parameters)", ind)
        )
        if not isinstance(out, Mapping) or not out:
            raise ModelError(
                "derived(p, amounts, ind) must return a dict such as "
                "{'DV': bn.error.Additive(ipred, sd=p.add_sd)}."
            )
        bad = sorted(k for k, v in out.items() if not isinstance(v, AbstractError))
        if bad:
            raise ModelError(
                f"derived(...) must map each output to an error model from bayes_nlme.error "
                f"(Additive, Proportional, Combined, Exponential); not so for {bad}."
            )
        if len(out) != 1:
            raise ModelError(
                f"derived(...) returned {len(out)} outputs {sorted(out)}; one observed output "
                "per model is supported so far (multiple endpoints via DVID arrive with "
                "issue #4)."
            )
        shape = jnp.shape(times)
        return ind, {k: v.broadcast(shape) for k, v in out.items()}, ok

    def output_name(self) -> str:
        """Name of the observed output (the NumPyro site of DV), e.g. ``"DV"``."""
        return self._probe()[1]

    def _probe(self):
        """Trace ``subject`` once on dummy values: (individual-parameter names, output, error)."""
        doses = Doses(
            jnp.zeros(1),
            jnp.ones(1),
            jnp.zeros(1),
            jnp.zeros(1, jnp.int32),
            jnp.ones(1, bool),
            jnp.zeros(1, jnp.int32),
            jnp.zeros(1),
        )
        theta = {k: jnp.asarray(1.0) for k in self.params}
        eta = {k: jnp.asarray(0.0) for k in self.eta_names}
        cov = {k: jnp.asarray(1.0) for k in self.covariates}
        ind, out = jax.eval_shape(lambda: self.subject(theta, eta, cov, doses, jnp.ones(2)))
        ((name, err),) = out.items()
        return list(ind), name, err

    # ------------------------------------------------------------------ NumPyro
    def sample_population(self):
        """Sample THETA and OMEGA sites; return (theta dict, ETA lower-Cholesky factor or None).

        A fixed parameter (:meth:`Param.fixed`) is no sample site: it is recorded with
        ``numpyro.deterministic`` so that it appears in the posterior with its value.
        """
        theta = {
            name: (
                numpyro.deterministic(name, jnp.asarray(par.value, dtype=float))
                if par.is_fixed
                else numpyro.sample(name, par.prior)
            )
            for name, par in self.params.items()
        }
        if self.random is None:
            return theta, None
        sds = jnp.stack(
            [numpyro.sample(f"omega_{n}_sd", self.random.sd_prior(n)) for n in self.eta_names]
        )
        corr = self.random.corr_prior()
        if corr is None:
            return theta, jnp.diag(sds)
        chol = numpyro.sample("omega_corr_chol", corr)
        numpyro.deterministic("omega_corr", chol @ chol.T)
        return theta, sds[:, None] * chol

    def numpyro_model(self, data: ModelData, DV=None):
        """The plain NumPyro model (inspect it, wrap it with handlers, or copy it).

        Parameters
        ----------
        data : ModelData
            From :meth:`model_data`.
        DV : array, shape (n_obs,), optional
            Observed values; ``None`` simulates them (prior/posterior predictive).

        Notes
        -----
        Sites: every population parameter; ``omega_<name>_sd``; ``omega_corr_chol`` (block
        OMEGA only); ``z_eta`` (plate ``ID``, shape (n_id, n_eta), the non-centred standard
        normal draws; ``eta_centered`` instead with ``IIV(centered=True)``);
        deterministic ``eta_<name>`` and individual parameters (plate ``ID``),
        ``IPRED`` (plate ``obs``), the observed site (plate ``obs``) and, when ``DV`` is given,
        its pointwise log-likelihood ``loglik_<site>``.
        """
        theta, chol = self.sample_population()
        n_id = data.n_id
        if chol is not None:
            k = len(self.eta_names)
            with numpyro.plate("ID", n_id):
                if self.random.centered:
                    eta_mat = numpyro.sample(
                        "eta_centered", dist.MultivariateNormal(jnp.zeros(k), scale_tril=chol)
                    )
                else:
                    z = numpyro.sample("z_eta", dist.Normal(0.0, 1.0).expand([k]).to_event(1))
                    eta_mat = z @ chol.T
            eta = {
                n: numpyro.deterministic(f"eta_{n}", eta_mat[:, i])
                for i, n in enumerate(self.eta_names)
            }
        else:
            eta = {}
        ind, outputs, ok = self.predict_subjects(theta, eta, data)
        if hasattr(self.dynamics, "solve_status"):
            # A failed ODE solve makes the proposal impossible (log density -inf) instead of
            # NaN; ``solver_ok`` lets simulations name the subjects that failed.
            numpyro.deterministic("solver_ok", ok)
            numpyro.factor("solver_failure", jnp.where(jnp.all(ok), 0.0, -jnp.inf))
        for k, v in ind.items():
            numpyro.deterministic(k, jnp.broadcast_to(v, (n_id,)))
        ((name, err),) = outputs.items()
        numpyro.deterministic("IPRED", err.ipred)
        with numpyro.plate("obs", data.n_obs):
            numpyro.sample(name, err.distribution(), obs=DV)
        if DV is not None:
            # Pointwise log-likelihood, computed once per kept draw inside the compiled
            # sampling loop (cheaper than a separate pass afterwards).
            numpyro.deterministic(f"loglik_{name}", err.distribution().log_prob(DV))

    def predict_subjects(self, theta: Mapping, eta: Mapping, data: ModelData):
        """Vectorised ``subject`` over all subjects, outputs gathered onto the flat ``obs``.

        Parameters
        ----------
        theta : mapping of str to scalar
        eta : mapping of str to array, shape (n_id,)
        data : ModelData

        Returns
        -------
        ind : dict of str to array, shape (n_id,)
        outputs : dict of str to AbstractError with fields of shape (n_obs,)
        ok : bool array, shape (n_id,)
            False where the structural model's solver failed (always True for analytic
            models); the amounts of such subjects are placeholders.
        """
        doses = data.doses

        def one(eta_i, cov_i, doses_i, times_i):
            return self.subject_status(theta, eta_i, cov_i, doses_i, times_i)

        ind, outputs, ok = jax.vmap(one)(eta, data.covariates, doses, data.obs_time)
        s, j = data.obs_subject, data.obs_slot
        outputs = {k: jax.tree_util.tree_map(lambda x: x[s, j], v) for k, v in outputs.items()}
        return ind, outputs, ok
