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
from ..data._rules import _rows_text
from ..pk._base import AbstractPKModel
from ._error import AbstractError, Censored, Endpoints
from ._iov import IOV
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


class _SolverFailureCounter:
    """Counts log-density evaluations whose ODE solve failed, across a fit (thread-safe).

    The model calls :meth:`record` with each evaluation's per-subject ``ok`` flags; a
    host callback runs only when some subject failed (``lax.cond``), so successful
    evaluations cost nothing (under ``vmap`` the branch becomes a select and the callback
    runs with a count of 0). :func:`bayes_nlme.fit` resets it before sampling and reports
    the count (``sample_stats.attrs["ode_solver_failures"]`` and a warning).
    """

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self.evaluations = 0

    def reset(self) -> None:
        with self._lock:
            self.evaluations = 0

    def _add(self, n_failed_subjects: Any) -> None:
        n = int(np.sum(np.asarray(n_failed_subjects) > 0))
        with self._lock:
            self.evaluations += n

    def record(self, ok: Any) -> None:
        """Count this evaluation if any subject's solve failed (call under tracing)."""
        n_bad = jnp.sum(~jnp.asarray(ok, bool))
        jax.lax.cond(
            n_bad > 0,
            lambda m: jax.debug.callback(self._add, m),
            lambda m: None,
            n_bad,
        )


#: The process-wide counter the population model reports ODE solve failures to.
SOLVER_FAILURES = _SolverFailureCounter()


class ModelData(NamedTuple):
    """The arrays a compiled model needs (a JAX pytree; built by :meth:`Model.model_data`).

    The structural model is evaluated per *unit*: a subject, or one segment of a subject
    when the dataset has reset records (EVID 3/4) or the model has IOV. Without resets and
    IOV, units are subjects (``unit_id`` is None).

    When a covariate the model declares changes within a unit (time-varying covariates),
    each unit is further split into consecutive *covariate intervals* (``int_start`` is
    not None): the dose fields then have shape (n_unit, n_int, n_dose_max), ``obs_time``
    (n_unit, n_int, n_time_max), and ``obs_slot`` indexes the flattened last two axes
    (``interval * n_time_max + slot``); ``unit_id`` is set even without resets.

    Attributes
    ----------
    dose_time, dose_amt, dose_rate, dose_cmt, dose_mask : arrays, shape (n_unit, n_dose_max)
    obs_time : array, shape (n_unit, n_time_max)
        Times at which the model is evaluated for each unit.
    obs_unit, obs_slot : int arrays, shape (n_obs,)
        Position of each entry of the flat ``obs`` vector in the padded ``obs_time``.
    covariates : dict of str to array, shape (n_unit,)
        The covariates the model declares (the value at the start of the unit's segment).
    dose_ss, dose_ii : arrays, shape (n_unit, n_dose_max), or None
        Steady-state flag (int) and interval of each dose (see :class:`bayes_nlme.data.Doses`).
        :meth:`Model.model_data` leaves both None when the dataset has no steady-state dose,
        which keeps the structural model on its path without steady-state terms.
    id_index : int array, shape (n_id,)
        ``0, ..., n_id - 1`` (its length is the number of subjects, plate ``ID``).
    unit_id : int array, shape (n_unit,), or None
        Subject of each unit; None when units are subjects.
    unit_occ : int array, shape (n_unit,), or None
        Occasion (index into ``occ_index``) of each unit, with IOV; else None.
    occ_index : int array, shape (n_occ,), or None
        ``0, ..., n_occ - 1`` with IOV (plate ``OCC``); else None.
    id_covariates : dict of str to array, shape (n_id,), or None
        Baseline covariates per subject when units are not subjects.
    obs_which : int array, shape (n_obs,), or None
        Output (index into the model's outputs) of each observation, for models with several
        outputs (endpoints, DVID); None for one output.
    obs_cens : bool array, shape (n_obs,), or None
        Censored (BLQ) observations; None when there are none.
    obs_lloq : float array, shape (n_obs,), or None
        LLOQ of each observation (NaN where unknown); None when unknown everywhere.
    int_start : float array, shape (n_unit, n_int), or None
        Start time of each covariate interval (the first: the unit's first record); padding
        intervals repeat the last start. None without time-varying covariates.
    int_mask : bool array, shape (n_unit, n_int), or None
        True for the real covariate intervals.
    int_covariates : dict of str to array, shape (n_unit, n_int), or None
        The declared covariates' value in each covariate interval (padding: the last one).
    obs_mask : bool array, shape (n_obs,), or None
        False on padding entries of ``obs`` (set by :func:`bayes_nlme.fit_batch`, which pads
        datasets of a batch to one shape); their log-likelihood is 0. None: all real.
    """

    dose_time: Any
    dose_amt: Any
    dose_rate: Any
    dose_cmt: Any
    dose_mask: Any
    obs_time: Any
    obs_unit: Any
    obs_slot: Any
    covariates: dict
    dose_ss: Any = None
    dose_ii: Any = None
    id_index: Any = None
    unit_id: Any = None
    unit_occ: Any = None
    occ_index: Any = None
    id_covariates: Any = None
    obs_which: Any = None
    obs_cens: Any = None
    obs_lloq: Any = None
    int_start: Any = None
    int_mask: Any = None
    int_covariates: Any = None
    obs_mask: Any = None

    @property
    def doses(self) -> Doses:
        """All units' dose events as one :class:`Doses` (fields (n_unit, n_dose_max))."""
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
        """Number of subjects."""
        if self.id_index is None:
            return self.dose_time.shape[0]
        return self.id_index.shape[0]

    @property
    def n_unit(self) -> int:
        """Number of units (subjects, or subject segments)."""
        return self.dose_time.shape[0]

    @property
    def n_obs(self) -> int:
        return self.obs_unit.shape[0]

    @property
    def n_occ(self) -> int:
        return 0 if self.occ_index is None else self.occ_index.shape[0]


_DOSE_FIELDS = {
    "time": np.float64,
    "amt": np.float64,
    "rate": np.float64,
    "cmt": np.int32,
    "ss": np.int32,
    "ii": np.float64,
}


def _dvid_label(value) -> str:
    """A DVID value as the dataset's labels write it (numbers as ``"1"``, ``"2.5"``)."""
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        return f"{float(value):g}"
    return str(value).strip()


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
        from :mod:`bayes_nlme.error` whose ``ipred`` is the prediction of DV; or several
        outputs (endpoints), e.g. ``{"cp": Combined(...), "pca": Additive(...)}``, each
        observation following the output its DVID names (see ``dvid``).
    covariates : sequence of str, optional
        Dataset columns ``pre`` uses. Matched case-insensitively. A covariate that is
        constant within each subject (or each segment between reset records) enters ``pre``
        with that value. A covariate whose value changes within a subject's records is
        used as **time-varying** automatically: piecewise constant, each record's value
        applying from its TIME on (last observation carried forward, LOCF; of several
        records at one TIME the last one counts; EVID=2 records may carry the changes).
        Each subject is then evaluated interval by interval (``pre`` is called with the
        interval's values, so every individual parameter, and ``ind`` in ``derived``, is
        piecewise constant), the compartment amounts carried continuously across each change
        time (no reset); infusions running across a change are split there. This is the
        convention of Monolix and of rxode2's default; NONMEM's PREDPP advances from one
        record to the next with the later record's values (NONMEM Users Guide VI, "next
        observation carried backward"): shift the column one record back to reproduce it.
        To use the baseline only, declare a column holding each subject's first value
        (e.g. ``df.groupby("ID").WT.transform("first")``). A value missing on any record is
        an error naming the rows (see ``read_nonmem(..., fill_covariates="locf")``).
    iov : IOV, optional
        Inter-occasion variability (``eta.kappa_<name>`` in ``pre``).
    dvid : mapping, optional
        DVID value -> output name, e.g. ``{1: "cp", 2: "pca"}``. Default: a DVID label
        equal to an output's name maps to it (warfarin's ``cp``/``pca``), and a model with
        one output takes every observation.
    blq : {"M3", "M4"}, default "M3"
        Likelihood of censored observations (CENS=1 rows; see
        :class:`bayes_nlme.error.Censored`, Beal 2001). Used only when the data have some.
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
        iov: IOV | None = None,
        dvid: Mapping | None = None,
        blq: str = "M3",
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
        if iov is not None and not isinstance(iov, IOV):
            raise ModelError(f"Model(iov=...) takes bn.IOV(...) or None; got {iov!r}.")
        self.iov = iov
        if dvid is not None and not isinstance(dvid, Mapping):
            raise ModelError(
                f"Model(dvid=...) maps DVID values to output names, e.g. {{1: 'cp', 2: 'pca'}}; "
                f"got {dvid!r}."
            )
        self.dvid = None if dvid is None else {_dvid_label(k): str(v) for k, v in dvid.items()}
        if blq not in ("M3", "M4"):
            raise ModelError(f"Model(blq=...) is 'M3' or 'M4' (Beal 2001); got {blq!r}.")
        self.blq = blq
        self.name = name or "model"
        if random is not None and isinstance(random.mu, Mapping):
            unknown = sorted(v for v in random.mu.values() if v not in self.params)
            if unknown:
                raise ModelError(
                    f"IIV(mu=...) refers to parameters that are not declared: {unknown}; the "
                    f"parameters are {list(self.params)}."
                )
        clash = sorted(set(self.params) & set(self.random_site_names()))
        if clash:
            raise ModelError(f"Parameter names clash with random-effect sites: {clash}.")

    def __getstate__(self):
        # the probe cache (shapes of traced outputs) is rebuilt where the model is unpickled
        state = dict(self.__dict__)
        state.pop("_probe_cache", None)
        return state

    # ------------------------------------------------------------------ names
    @property
    def eta_site(self) -> str:
        """Name of the per-subject random-effect sample site (plate ``ID``, shape
        (n_id, n_eta)): ``z_eta`` (non-centred, standard normal), ``eta_centered``
        (``IIV(centered=True)``), ``phi_eta`` (MU + ETA, ``IIV(mu=...)``) or
        ``eta_partial`` (``IIV(centered=[some names])``: MU + ETA in the centred columns,
        the standard normal z in the others)."""
        if self.random is None or self.random.centered is False:
            return "z_eta"
        if self.random.is_partially_centered:
            return "eta_partial"
        return "phi_eta" if self.random.mu is not None else "eta_centered"

    def eta_site_at_zero(self, theta: Mapping, data: ModelData):
        """Value of :attr:`eta_site` at which every ETA is 0, shape (n_id, n_eta): zeros,
        or MU (:meth:`mu_matrix`, 0 in non-centred columns) with MU-referencing.
        ``theta``: population parameters."""
        if self.eta_site in ("phi_eta", "eta_partial"):
            return self.mu_matrix(theta, data)
        return jnp.zeros((data.n_id, len(self.eta_names)))

    def mu_matrix(self, theta: Mapping, data: ModelData):
        """MU of every subject and ETA (``IIV(mu=...)``), shape (n_id, n_eta); 0 for ETAs
        without MU. Evaluated at the subjects' baseline covariates."""
        mu = self.random.mu
        k = len(self.eta_names)
        if mu is None:
            return jnp.zeros((data.n_id, k))
        if isinstance(mu, Mapping):
            row = jnp.stack(
                [
                    jnp.log(jnp.asarray(theta[mu[n]], dtype=float)) if n in mu else jnp.zeros(())
                    for n in self.eta_names
                ]
            )
            return jnp.broadcast_to(row, (data.n_id, k))
        p = Namespace("p (population parameters)", theta)
        cov = data.covariates if data.unit_id is None else data.id_covariates

        def one(cov_i):
            out = mu(p, Namespace("cov (covariates)", cov_i))
            if not isinstance(out, Mapping):
                raise ModelError(f"IIV mu(p, cov) must return a dict; got {type(out).__name__}.")
            unknown = sorted(set(out) - set(self.eta_names))
            if unknown:
                raise ModelError(
                    f"IIV mu(p, cov) returned MU for undeclared ETAs {unknown}; the ETAs are "
                    f"{list(self.eta_names)}."
                )
            nc = sorted(set(out) - set(self.random.centered_names))
            if nc:
                raise ModelError(
                    f"IIV mu(p, cov) returned MU for {nc}, which IIV(centered=...) leaves "
                    "non-centred; MU-referencing needs the ETA centred: add them to "
                    "centered, or drop their MU."
                )
            return jnp.stack(
                [jnp.asarray(out.get(n, 0.0), dtype=float).reshape(()) for n in self.eta_names]
            )

        return jax.vmap(one, axis_size=data.n_id)(cov)

    @property
    def eta_names(self) -> tuple[str, ...]:
        """Names of the random effects (empty without IIV)."""
        return tuple(self.random.names) if self.random is not None else ()

    def omega_sd_names(self) -> list[str]:
        """``omega_<name>_sd`` for each random effect."""
        return [f"omega_{n}_sd" for n in self.eta_names]

    @property
    def kappa_names(self) -> tuple[str, ...]:
        """Names of the inter-occasion random effects (empty without IOV)."""
        return tuple(self.iov.names) if self.iov is not None else ()

    def random_site_names(self) -> list[str]:
        names = self.omega_sd_names()
        if self.random is not None and self.random.corr is not None:
            names.append("omega_corr_chol")
        if self.iov is not None:
            names += self.iov.sd_names()
        return names

    def fixed_values(self) -> dict[str, float]:
        """Population quantities fixed to a value: THETA (``Param.fixed``) and OMEGA SDs
        (``IIV(sd={name: value})``), by site name."""
        out = {n: p.value for n, p in self.params.items() if p.is_fixed}
        if self.random is not None:
            out.update(self.random.fixed_sds())
        return out

    def population_names(self) -> list[str]:
        """Population-level posterior variables: THETA, OMEGA SDs (and ``omega_corr``),
        IOV SDs."""
        names = list(self.params) + self.omega_sd_names()
        if self.random is not None and self.random.corr is not None:
            names.append("omega_corr")
        if self.iov is not None:
            names += self.iov.sd_names()
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
    def model_data(
        self, data: Dataset, times: np.ndarray | None = None, output: str | None = None
    ) -> ModelData:
        """Arrays for :meth:`numpyro_model`, checked against this model.

        Parameters
        ----------
        data : Dataset
            From :func:`bayes_nlme.read_nonmem`.
        times : ndarray, shape (n_id, n_time), optional
            Evaluate the model at these times instead of the observation times (every entry
            becomes an element of ``obs``); used for prediction curves.
        output : str, optional
            With ``times``: the output to evaluate (default: the first one ``derived``
            returns).

        Raises
        ------
        ModelError
            If a declared covariate is absent from the dataset or missing (NaN) on some
            record (the message names the subjects and rows); if the dataset's DVID values do
            not map onto the model's outputs; if an IOV occasion column is absent, missing,
            or changes without a reset; if ``times`` is given for a dataset with reset
            records or a model with IOV. With time-varying covariates (a declared covariate
            changing within a segment): if the structural model cannot start from given
            amounts, or a dose followed by a change in its segment cannot be carried across
            it (a lag time ``ALAG<n>`` returned by ``pre`` for its compartment, RATE -1/-2,
            a steady-state infusion, or an infusion whose compartment has ``F<n>``); the
            message names the subjects and rows.

        Notes
        -----
        Time-varying covariates (see the ``covariates`` parameter of :class:`Model`) make
        :class:`ModelData` hold covariate intervals (``int_start``, ``int_mask``,
        ``int_covariates``; dose fields and ``obs_time`` with an interval axis); only then:
        without them the arrays, and the predictions, are exactly those of the per-unit
        path.
        """
        by_lower = {k.lower(): k for k in data.covariates}
        missing = [c for c in self.covariates if c.lower() not in by_lower]
        if missing:
            raise ModelError(
                f"The model uses covariates {missing} that the dataset lacks; dataset "
                f"covariate columns: {sorted(data.covariates) or 'none'}. Add the column or "
                "remove the name from Model(covariates=...)."
            )
        self._check_missing_covariates(data, by_lower)
        if np.any(data.dose_mask & (data.dose_rate < 0)):
            self._check_modeled_rates(data)
        varying = [c for c in self.covariates if by_lower[c.lower()] in data.segment_varying]
        if data.has_resets or self.iov is not None:
            units = self._units(data)
            if times is not None:
                raise ModelError(
                    "Prediction curves at chosen times (times=...) are not available for "
                    "datasets with reset records or models with IOV yet: evaluate at the "
                    "observation times, or read each occasion as its own subject for plotting."
                )
        elif varying:
            units = [(i, 0) for i in range(data.n_id)]
        else:
            units = None
        has_ss = bool(np.any((np.asarray(data.dose_ss) > 0) & np.asarray(data.dose_mask, bool)))
        out_names = self.output_names()
        if times is None:
            s, j = data.obs_index
            which = self._obs_which(data, out_names)
            cens = np.asarray(data.obs_cens[s, j], bool)
            lloq = np.asarray(data.obs_lloq[s, j], float)
        else:
            times = np.asarray(times, dtype=float)
            if times.ndim != 2 or times.shape[0] != data.n_id:
                raise ModelError(
                    f"times must have shape (n_id={data.n_id}, n_time); got {times.shape}."
                )
            s, j = np.nonzero(np.ones(times.shape, dtype=bool))
            if output is not None and output not in out_names:
                raise ModelError(f"output {output!r} is not one of the outputs {out_names}.")
            k = out_names.index(output) if output is not None else 0
            which = np.full(s.shape, k) if len(out_names) > 1 else None
            cens = np.zeros(s.shape, bool)
            lloq = np.full(s.shape, np.nan)
        fields = dict(
            obs_which=None if which is None else jnp.asarray(which, jnp.int32),
            obs_cens=jnp.asarray(cens) if cens.any() else None,
            obs_lloq=jnp.asarray(np.where(cens | np.isfinite(lloq), lloq, np.nan))
            if np.isfinite(lloq).any()
            else None,
            id_index=jnp.arange(data.n_id, dtype=jnp.int32),
        )
        if units is None:
            covs = {
                c: jnp.asarray(data.covariates[by_lower[c.lower()]], float) for c in self.covariates
            }
            return ModelData(
                dose_time=jnp.asarray(data.dose_time, dtype=float),
                dose_amt=jnp.asarray(data.dose_amt, dtype=float),
                dose_rate=jnp.asarray(data.dose_rate, dtype=float),
                dose_cmt=jnp.asarray(data.dose_cmt, dtype=jnp.int32),
                dose_mask=jnp.asarray(data.dose_mask, dtype=bool),
                obs_time=jnp.asarray(data.obs_time if times is None else times, dtype=float),
                obs_unit=jnp.asarray(s, dtype=jnp.int32),
                obs_slot=jnp.asarray(j, dtype=jnp.int32),
                covariates=covs,
                dose_ss=jnp.asarray(data.dose_ss, dtype=jnp.int32) if has_ss else None,
                dose_ii=jnp.asarray(data.dose_ii, dtype=float) if has_ss else None,
                **fields,
            )
        if varying:
            return self._interval_data(data, units, varying, has_ss, by_lower, fields, times)
        return self._unit_data(data, units, has_ss, by_lower, fields)

    @staticmethod
    def _record_values(data: Dataset, name: str) -> np.ndarray:
        """Value of covariate ``name`` on every record (``record_*`` slots), (n_id, n_rec)."""
        if name in data.record_covariates:
            return np.asarray(data.record_covariates[name], float)
        by_seg = np.asarray(data.segment_covariates[name], float)
        seg = np.clip(np.asarray(data.record_seg), 0, by_seg.shape[1] - 1)
        return np.take_along_axis(by_seg, seg, axis=1)

    def _check_missing_covariates(self, data: Dataset, by_lower) -> None:
        """A declared covariate missing (NaN) on some record: name the subjects and rows."""
        for c in self.covariates:
            name = by_lower[c.lower()]
            bad = np.asarray(data.record_mask, bool) & np.isnan(self._record_values(data, name))
            base = np.isnan(np.asarray(data.covariates[name], dtype=float))
            subjects = np.flatnonzero(bad.any(axis=1) | base)
            if subjects.size == 0:
                continue
            rows = sorted(int(r) for r in np.asarray(data.record_row)[bad] if r >= 0)
            where = (
                "on " + _rows_text(rows, csv=data.source is not None)
                if rows
                else "on their first record"
            )
            raise ModelError(
                f"Covariate {c!r} is missing (NaN) for subjects {data.ids[subjects].tolist()} "
                f"{where} (rows are the input table's index labels). The model uses the value "
                "on every record (time-varying covariates are carried forward from each "
                "record's TIME). Fix: fill it in the dataset (impute each missing value; for a "
                "baseline covariate repeat the subject's first value on every row), or read "
                "the dataset with read_nonmem(..., fill_covariates='locf') to carry each "
                "subject's last value forward, or drop those subjects."
            )

    def _interval_data(
        self, data: Dataset, units, varying, has_ss: bool, by_lower, fields, times=None
    ) -> ModelData:
        """Units split into covariate intervals (time-varying covariates, see model_data).

        Interval ``k`` of a unit starts at the ``k``-th TIME where the value of some declared
        covariate changes (each record's value applies from its TIME on; of several records
        at one TIME the last one counts). Doses go to the interval of their time;
        infusions (RATE > 0) still running at a change time are split there into two
        infusions at the same rate. Doses whose effect could cross a change time in a way
        the carried amounts cannot represent are refused (see
        :meth:`_interval_problem`).
        """
        if not getattr(self.dynamics, "supports_initial", False):
            raise ModelError(
                f"The covariates {varying} change within subjects (time-varying), which needs "
                f"a structural model that can start from given amounts; {self.dynamics!r} "
                "cannot (supports_initial is False). Use an analytic or bn.pk.ODE model, or "
                "declare a baseline covariate column instead."
            )
        names = [by_lower[c.lower()] for c in self.covariates]
        rec_values = [self._record_values(data, nm) for nm in names]
        returned = set(self._probe()[0])
        plans, problems = [], []
        for i, g in units:
            rec = np.flatnonzero(np.asarray(data.record_mask[i], bool) & (data.record_seg[i] == g))
            rt = np.asarray(data.record_time[i, rec], float)
            vals = np.stack([v[i, rec] for v in rec_values], axis=1)
            last = np.r_[rt[1:] != rt[:-1], True]  # the last record at each TIME
            t_u, v_u = rt[last], vals[last]
            new = np.r_[True, np.any(v_u[1:] != v_u[:-1], axis=1)]
            starts, values = t_u[new], v_u[new]
            n_int = len(starts)
            pieces = [[] for _ in range(n_int)]
            dl = np.flatnonzero(data.dose_mask[i] & (data.dose_seg[i] == g))
            for jd in dl:
                dose = {k: getattr(data, f"dose_{k}")[i, jd] for k in _DOSE_FIELDS}
                k = int(np.searchsorted(starts[1:], dose["time"], side="right"))
                if k == n_int - 1:  # no change after it: as is
                    pieces[k].append(dose)
                    continue
                why = self._interval_problem(dose, returned)
                if why is not None:
                    problems.append((i, int(data.dose_row[i, jd]), why, float(starts[k + 1])))
                    continue
                rate = float(dose["rate"])
                end = float(dose["time"]) + (float(dose["amt"]) / rate if rate > 0 else 0.0)
                if end <= starts[k + 1]:
                    pieces[k].append(dose)
                    continue
                for j in range(k, n_int):  # an infusion split at the change times
                    a = max(float(dose["time"]), float(starts[j]))
                    b = min(end, float(starts[j + 1])) if j + 1 < n_int else end
                    if b > a:
                        pieces[j].append({**dose, "time": a, "amt": rate * (b - a)})
            if times is None:
                ol = np.flatnonzero(data.obs_mask[i] & (data.obs_seg[i] == g))
                ot = np.asarray(data.obs_time[i, ol], float)
            else:
                ol = np.arange(times.shape[1])
                ot = times[i]
            k_obs = np.searchsorted(starts[1:], ot, side="right")
            plans.append((starts, values, pieces, ol, ot, k_obs))
        if problems:
            self._raise_interval_problems(data, problems, varying)

        n_unit = len(units)
        n_int = max(len(p[0]) for p in plans)
        n_dose = max(1, max(len(x) for p in plans for x in p[2]))
        n_time = max(1, max(int(np.bincount(p[5], minlength=1).max()) for p in plans))
        d = {k: np.zeros((n_unit, n_int, n_dose), t) for k, t in _DOSE_FIELDS.items()}
        d["mask"] = np.zeros((n_unit, n_int, n_dose), bool)
        obs_time = np.zeros((n_unit, n_int, n_time))
        start = np.zeros((n_unit, n_int))
        int_mask = np.zeros((n_unit, n_int), bool)
        int_cov = np.zeros((len(names), n_unit, n_int))
        where = {}
        for u, ((i, _), (starts, values, pieces, ol, ot, k_obs)) in enumerate(
            zip(units, plans, strict=True)
        ):
            m = len(starts)
            start[u, :m], start[u, m:] = starts, starts[-1]
            int_mask[u, :m] = True
            int_cov[:, u, :m] = values.T
            int_cov[:, u, m:] = values[-1][:, None]
            for k, doses in enumerate(pieces):
                for slot, dose in enumerate(doses):
                    for f in _DOSE_FIELDS:
                        d[f][u, k, slot] = dose[f]
                    d["mask"][u, k, slot] = True
            fill = np.zeros(n_int, int)
            for jj, t, k in zip(ol, ot, k_obs, strict=True):
                obs_time[u, k, fill[k]] = t
                where[(i, int(jj))] = (u, int(k) * n_time + fill[k])
                fill[k] += 1
        if times is None:
            s, j = data.obs_index
        else:
            s, j = np.nonzero(np.ones(times.shape, dtype=bool))
        pos = np.array([where[(int(a), int(b))] for a, b in zip(s, j, strict=True)]).reshape(-1, 2)
        unit_id = np.array([i for i, _ in units])
        covs = {c: jnp.asarray(int_cov[k, :, 0]) for k, c in enumerate(self.covariates)}
        return self._units_model_data(
            data,
            units,
            d,
            obs_time,
            pos,
            unit_id,
            covs,
            has_ss,
            by_lower,
            int_start=jnp.asarray(start),
            int_mask=jnp.asarray(int_mask),
            int_covariates={c: jnp.asarray(int_cov[k]) for k, c in enumerate(self.covariates)},
            **fields,
        )

    def _interval_problem(self, dose: dict, returned: set) -> str | None:
        """Why a dose followed by a covariate change cannot be carried across it, or None.

        The amounts carried into the next interval are those at the change time; what is
        still to come from a dose after that time must be known from the data alone. A
        bolus without lag time and an infusion at a given RATE (> 0, without bioavailability
        ``F<n>``: it would change the duration) qualify; a lag time ``ALAG<n>`` (the lagged
        dose could fall after the change), a modelled infusion (RATE -1/-2: duration from
        the parameters) and a steady-state infusion (implied infusions still running) do
        not.
        """
        c = int(dose["cmt"]) or self.dynamics.default_dose_cmt
        rate, ss = float(dose["rate"]), int(dose["ss"])
        if rate < 0:
            return f"a modelled infusion (RATE={rate:g}: its duration comes from R{c}/D{c})"
        if ss > 0 and rate != 0:
            return "a steady-state infusion (SS>0, RATE>0: implied infusions still running)"
        if f"ALAG{c}" in returned:
            return f"a dose into CMT {c} with a lag time ALAG{c} (it could land after the change)"
        if rate > 0 and f"F{c}" in returned:
            return f"an infusion into CMT {c} whose duration depends on F{c}"
        return None

    def _raise_interval_problems(self, data: Dataset, problems, varying) -> None:
        csv = data.source is not None
        lines = []
        for i in sorted({p[0] for p in problems}):
            mine = [p for p in problems if p[0] == i]
            rows = sorted({p[1] for p in mine if p[1] >= 0})
            whys = "; ".join(sorted({p[2] for p in mine}))
            change = min(p[3] for p in mine)
            where = _rows_text(rows, csv=csv) if rows else "dose records"
            lines.append(
                f"  subject {data.ids[i]}, {where}: {whys}, followed by a change of the "
                f"time-varying covariates at TIME {change:g}"
            )
        raise ModelError(
            f"The covariates {varying} change within subjects, so the model is evaluated "
            "interval by interval with the amounts carried across each change; these doses "
            "cannot be carried across (rows are the input table's index labels):\n"
            + "\n".join(lines)
            + "\nFix: declare a baseline covariate column instead (e.g. "
            "df.groupby('ID').WT.transform('first')), give the doses as explicit events "
            "(bolus / infusion with RATE > 0, no ALAG or F on infusions), or move the change "
            "after the dose's effect."
        )

    def _units(self, data: Dataset) -> list[tuple[int, int]]:
        """(subject, segment) of every segment holding a dose or an observation."""
        units = []
        for i in range(data.n_id):
            segs = set(data.dose_seg[i][data.dose_mask[i]].tolist())
            segs |= set(data.obs_seg[i][data.obs_mask[i]].tolist())
            units += [(i, g) for g in sorted(segs)]
        return units

    def _occasions(self, data: Dataset, units) -> tuple[np.ndarray, np.ndarray]:
        """Occasion code of each unit and the occasion values (IOV)."""
        col = self.iov.occasion
        by_lower = {k.lower(): k for k in data.segment_covariates}
        if col.lower() not in by_lower:
            raise ModelError(
                f"IOV(occasion={col!r}): the dataset has no such column; its columns other "
                f"than NONMEM items are {sorted(data.covariates) or 'none'}."
            )
        name = by_lower[col.lower()]
        if name in data.segment_varying:
            raise ModelError(
                f"The occasion column {name!r} changes within a segment (between two reset "
                "records) for some subjects. Each occasion must start with a reset: EVID=4 on "
                "its first dose or an EVID=3 record; read_nonmem(..., "
                "reset_on_time_decrease=True) does this where TIME restarts."
            )
        occ = np.array([data.segment_covariates[name][i, g] for i, g in units])
        if np.isnan(occ).any():
            bad = sorted({data.ids[i] for (i, _), o in zip(units, occ, strict=True) if np.isnan(o)})
            raise ModelError(f"The occasion column {name!r} is missing for subjects {bad}.")
        values = np.unique(occ)
        return np.searchsorted(values, occ), values

    def _unit_data(self, data: Dataset, units, has_ss: bool, by_lower, fields) -> ModelData:
        n_unit = len(units)
        d_lists, o_lists = [], []
        for i, g in units:
            d_lists.append(np.flatnonzero(data.dose_mask[i] & (data.dose_seg[i] == g)))
            o_lists.append(np.flatnonzero(data.obs_mask[i] & (data.obs_seg[i] == g)))
        n_dose = max(1, max(len(x) for x in d_lists))
        n_time = max(1, max(len(x) for x in o_lists))
        d = {k: np.zeros((n_unit, n_dose), t) for k, t in _DOSE_FIELDS.items()}
        d["mask"] = np.zeros((n_unit, n_dose), bool)
        obs_time = np.zeros((n_unit, n_time))
        where = {}
        for u, ((i, _), dl, ol) in enumerate(zip(units, d_lists, o_lists, strict=True)):
            for k in _DOSE_FIELDS:
                d[k][u, : len(dl)] = getattr(data, f"dose_{k}")[i, dl]
            d["mask"][u, : len(dl)] = True
            obs_time[u, : len(ol)] = data.obs_time[i, ol]
            for slot, jj in enumerate(ol):
                where[(i, int(jj))] = (u, slot)
        s, j = data.obs_index
        pos = np.array([where[(int(a), int(b))] for a, b in zip(s, j, strict=True)]).reshape(-1, 2)
        unit_id = np.array([i for i, _ in units])
        seg_idx = np.array([g for _, g in units])
        covs = {}
        for c in self.covariates:
            seg_values = data.segment_covariates[by_lower[c.lower()]][unit_id, seg_idx]
            base = np.asarray(data.covariates[by_lower[c.lower()]], float)[unit_id]
            covs[c] = jnp.asarray(np.where(np.isnan(seg_values), base, seg_values), float)
        return self._units_model_data(
            data, units, d, obs_time, pos, unit_id, covs, has_ss, by_lower, **fields
        )

    def _units_model_data(
        self, data, units, d, obs_time, pos, unit_id, covs, has_ss, by_lower, **fields
    ) -> ModelData:
        """ModelData of units (subject segments or covariate intervals): dose fields ``d``,
        evaluation times, obs positions ``pos`` (unit, slot), per-unit covariates ``covs``;
        adds the occasions (with IOV) and the subjects' baseline covariates."""
        unit_occ = occ_index = None
        if self.iov is not None:
            codes, values = self._occasions(data, units)
            unit_occ = jnp.asarray(codes, jnp.int32)
            occ_index = jnp.arange(len(values), dtype=jnp.int32)
        return ModelData(
            dose_time=jnp.asarray(d["time"]),
            dose_amt=jnp.asarray(d["amt"]),
            dose_rate=jnp.asarray(d["rate"]),
            dose_cmt=jnp.asarray(d["cmt"]),
            dose_mask=jnp.asarray(d["mask"]),
            obs_time=jnp.asarray(obs_time),
            obs_unit=jnp.asarray(pos[:, 0], jnp.int32),
            obs_slot=jnp.asarray(pos[:, 1], jnp.int32),
            covariates=covs,
            dose_ss=jnp.asarray(d["ss"]) if has_ss else None,
            dose_ii=jnp.asarray(d["ii"]) if has_ss else None,
            unit_id=jnp.asarray(unit_id, jnp.int32),
            unit_occ=unit_occ,
            occ_index=occ_index,
            id_covariates={
                c: jnp.asarray(data.covariates[by_lower[c.lower()]], float) for c in self.covariates
            },
            **fields,
        )

    def occasion_values(self, data: Dataset) -> np.ndarray:
        """The values of the IOV occasion column (the ``OCC`` coordinates)."""
        if self.iov is None:
            return np.zeros(0)
        return self._occasions(data, self._units(data))[1]

    def _obs_which(self, data: Dataset, out_names: list[str]) -> np.ndarray | None:
        """Index of the output of each observation (None for a one-output model)."""
        s, j = data.obs_index
        codes = np.asarray(data.obs_dvid[s, j])
        levels = list(data.dvid_levels)
        used = sorted(set(codes.tolist())) if levels else []
        if len(out_names) == 1 and self.dvid is None:
            if len(used) > 1:
                raise ModelError(
                    f"The dataset has observations of several types, DVID "
                    f"{[levels[c] for c in used]}, but derived(...) returns one output "
                    f"{out_names}. Return one error model per type, e.g. "
                    "{'cp': ..., 'pca': ...}, and map DVID values to them with "
                    "Model(dvid={...}) unless the DVID labels are the output names."
                )
            return None
        if not levels:
            if len(out_names) > 1:
                raise ModelError(
                    f"derived(...) returns several outputs {out_names}, but the dataset has no "
                    "DVID column saying which output each observation is. Add a DVID column."
                )
            return None
        mapping = self.dvid if self.dvid is not None else {n: n for n in out_names}
        unmapped = [levels[c] for c in used if levels[c] not in mapping]
        unknown = sorted({v for v in mapping.values() if v not in out_names})
        if unmapped or unknown:
            raise ModelError(
                f"DVID values {unmapped} have no output" * bool(unmapped)
                + ("; " if unmapped and unknown else "")
                + f"Model(dvid=...) names outputs {unknown} that derived(...) does not return"
                * bool(unknown)
                + f". The dataset's DVID values are {levels}; the model's outputs are "
                f"{out_names}. Map them with Model(dvid={{value: output, ...}})."
            )
        per_level = np.array([out_names.index(mapping.get(lv, out_names[0])) for lv in levels])
        return per_level[codes]

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
        ind = self.individual(theta, eta, cov)
        amounts, ok = self._amounts(ind, doses, times)
        return ind, self._outputs(theta, amounts, times, ind), ok

    def _amounts(self, ind, doses, times, initial=None):
        """Amounts (n_time, n_cmt) and the solver flag; ``initial=(t0, a0)`` as in
        :class:`bayes_nlme.pk.AbstractPKModel` (passed only when given)."""
        kw = {} if initial is None else {"initial": initial}
        solve = getattr(self.dynamics, "solve_status", None)
        if solve is None:  # analytic models cannot fail
            return self.dynamics.amounts(ind, doses, times, **kw), jnp.asarray(True)
        # ODE: a failed solve gives NaN amounts; keep NaN out of values and gradients
        amounts, ok = solve(ind, doses, times, **kw)
        return jnp.where(ok, amounts, 1.0), ok

    def subject_intervals(
        self, theta: Mapping, eta: Mapping, cov: Mapping, doses: Doses, times, start, mask
    ):
        """Error model for ONE unit split into covariate intervals (time-varying covariates).

        The intervals are evaluated in order with ``jax.lax.scan``: interval ``k`` computes
        the individual parameters from its covariate values, then the amounts at its
        evaluation times and at the start of interval ``k + 1``, starting from the amounts
        carried over from interval ``k - 1`` at its own start (``initial=(t0, a0)`` of the
        structural model: continuous amounts, no reset at a covariate change).

        Parameters
        ----------
        theta, eta
            As in :meth:`subject_status`.
        cov : mapping of str to array, shape (n_int,)
            Covariate values of each interval.
        doses : Doses
            Dose events of each interval, fields of shape (n_int, n_dose_max).
        times : array, shape (n_int, n_time)
            Evaluation times of each interval.
        start : array, shape (n_int,)
            Start time of each interval (padding intervals repeat the last one).
        mask : bool array, shape (n_int,)
            The real intervals.

        Returns
        -------
        ind : dict of str to array, shape (n_int,)
            Individual parameters of each interval.
        outputs : dict of str to AbstractError
            Fields of shape (n_int * n_time,) (interval-major).
        ok : bool scalar
            False when an ODE solve of some real interval failed.
        """
        end = jnp.concatenate([start[1:], start[-1:]])
        n_cmt = len(self.dynamics.compartments)

        def step(carry, xs):
            cov_k, doses_k, times_k, t0, t1, real = xs
            ind = self.individual(theta, eta, cov_k)
            ts = jnp.concatenate([times_k, t1[None]])
            amounts, ok = self._amounts(ind, doses_k, ts, initial=(t0, carry))
            out = self._outputs(theta, amounts[:-1], times_k, ind)
            carry = jnp.where(real, jnp.where(ok, amounts[-1], 0.0), carry)
            return carry, (ind, out, ok | ~real)

        a0 = jnp.zeros(n_cmt, jnp.result_type(float))
        _, (ind, out, ok) = jax.lax.scan(step, a0, (cov, doses, times, start, end, mask))
        flat = {k: jax.tree_util.tree_map(lambda x: x.reshape(-1), v) for k, v in out.items()}
        return ind, flat, jnp.all(ok)

    def _outputs(self, theta, amounts, times, ind) -> dict:
        """``derived`` on the amounts at ``times``, checked and broadcast to their shape."""
        p = Namespace("p (population parameters)", theta)
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
        shape = jnp.shape(times)
        return {k: v.broadcast(shape) for k, v in out.items()}

    def individual(self, theta: Mapping, eta: Mapping, cov: Mapping) -> dict:
        """``pre`` for ONE subject, checked: the individual parameters as float arrays.

        With IOV, ``eta`` holds ``kappa_<name>`` too; missing ones are taken as 0 (the
        subject's parameters without occasion effects).
        """
        eta = dict(eta)
        for n in self.kappa_names:
            eta.setdefault(f"kappa_{n}", jnp.asarray(0.0))
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
        return {k: jnp.asarray(v, dtype=float) for k, v in ind.items()}

    def combine(self, outputs: Mapping, which=None, cens=None, lloq=None) -> AbstractError:
        """One error model for the flat ``obs`` vector from the outputs of :meth:`subject`.

        Parameters
        ----------
        outputs : dict of str to AbstractError
            Every output, fields gathered onto the observations (shape (n_obs,)), in the
            order ``derived`` returns them.
        which : int array, shape (n_obs,), optional
            Output of each observation (:attr:`ModelData.obs_which`); required for several
            outputs.
        cens, lloq : arrays, shape (n_obs,), optional
            Censored observations and their limits (:attr:`ModelData.obs_cens`/``obs_lloq``):
            the result is :class:`bayes_nlme.error.Censored` with the model's ``blq`` method.
        """
        errs = list(outputs.values())
        if len(errs) == 1:
            err = errs[0]
        else:
            if which is None:
                raise ModelError(f"several outputs {list(outputs)} need the DVID of each obs.")
            err = Endpoints(tuple(errs), which)
        if cens is not None:
            if self.blq == "M4" and not err.can_truncate():
                raise ModelError(
                    "blq='M4' needs error models of the normal family (Additive, "
                    "Proportional, Combined, Power) or Exponential; use blq='M3'."
                )
            lloq = jnp.where(cens, jnp.nan_to_num(lloq), 0.0)
            err = Censored(err, cens, lloq, method=self.blq)
        return err

    def output_name(self) -> str:
        """Name of the observed NumPyro site: the output's name (e.g. ``"DV"``) for a model
        with one output, ``"DV"`` for several (endpoints)."""
        names = self.output_names()
        return names[0] if len(names) == 1 else "DV"

    def output_names(self) -> list[str]:
        """The outputs ``derived`` returns, in its order (e.g. ``["cp", "pca"]``)."""
        return list(self._probe_outputs()[1])

    def _probe(self):
        """Trace ``subject`` once on dummy values: (individual-parameter names, observed site
        name, error model of the first output)."""
        ind, out = self._probe_outputs()
        return list(ind), self.output_name(), next(iter(out.values()))

    def _probe_outputs(self):
        """(individual parameters, outputs) of one subject as shapes (``jax.eval_shape``).

        Cached per model and declaration: tracing an ODE solve takes seconds, and the output
        names are needed each time the NumPyro model is traced. The probe's doses carry no
        steady-state fields, which keeps the steady-state solve out of the trace.
        """
        key = (
            id(self.pre),
            id(self.derived),
            id(self.dynamics),
            tuple(self.params),
            self.eta_names,
            self.kappa_names,
            self.covariates,
            jax.config.jax_enable_x64,
        )
        cached = self.__dict__.get("_probe_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        doses = Doses(
            jnp.zeros(1), jnp.ones(1), jnp.zeros(1), jnp.zeros(1, jnp.int32), jnp.ones(1, bool)
        )
        theta = {k: jnp.asarray(1.0) for k in self.params}
        eta = {k: jnp.asarray(0.0) for k in self.eta_names}
        eta.update({f"kappa_{k}": jnp.asarray(0.0) for k in self.kappa_names})
        cov = {k: jnp.asarray(1.0) for k in self.covariates}
        out = jax.eval_shape(lambda: self.subject(theta, eta, cov, doses, jnp.ones(2)))
        self.__dict__["_probe_cache"] = (key, out)
        return out

    def positive_required(self, data: ModelData) -> np.ndarray:
        """Observations whose error model needs DV > 0 (Exponential), shape (n_obs,);
        censored observations excluded."""
        kinds = [type(e).positive_dv for e in self._probe_outputs()[1].values()]
        which = np.zeros(data.n_obs, int) if data.obs_which is None else np.asarray(data.obs_which)
        out = np.asarray(kinds)[which]
        if data.obs_cens is not None:
            out &= ~np.asarray(data.obs_cens)
        return out

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
        fixed = self.random.fixed_sds()
        sds = jnp.stack(
            [
                numpyro.deterministic(site, jnp.asarray(fixed[site]))
                if site in fixed
                else numpyro.sample(site, self.random.sd_prior(n))
                for n, site in zip(self.eta_names, self.omega_sd_names(), strict=True)
            ]
        )
        corr = self.random.corr_prior()
        if corr is None:
            return theta, jnp.diag(sds)
        chol = numpyro.sample("omega_corr_chol", corr)
        numpyro.deterministic("omega_corr", chol @ chol.T)
        return theta, sds[:, None] * chol

    def sample_iov(self, data: ModelData) -> dict:
        """Sample the IOV SDs and KAPPAs (non-centred); return ``kappa_<name>`` arrays of
        shape (n_id, n_occ) (an empty dict without IOV)."""
        if self.iov is None:
            return {}
        sds = jnp.stack(
            [numpyro.sample(f"omega_iov_{n}_sd", self.iov.sd_prior(n)) for n in self.kappa_names]
        )
        k = len(self.kappa_names)
        with numpyro.plate("ID", data.n_id, dim=-1):
            z = numpyro.sample("z_kappa", dist.Normal(0.0, 1.0).expand([data.n_occ, k]).to_event(2))
        kappa = z * sds
        return {
            f"kappa_{n}": numpyro.deterministic(f"kappa_{n}", kappa[..., i])
            for i, n in enumerate(self.kappa_names)
        }

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
        normal draws; ``eta_centered`` instead with ``IIV(centered=True)``, ``phi_eta`` =
        MU + ETA with ``IIV(mu=...)``, ``eta_partial`` with ``IIV(centered=[names])``);
        deterministic ``eta_<name>`` and individual parameters (plate ``ID``); with IOV
        ``omega_iov_<name>_sd``, ``z_kappa`` (n_id, n_occ, n_kappa) and ``kappa_<name>``
        (n_id, n_occ); ``IPRED`` (plate ``obs``), the observed site (plate ``obs``) and,
        when ``DV`` is given, its pointwise log-likelihood ``loglik_<site>``; when
        simulating with known LLOQs, ``BLQ`` (plate ``obs``): the draw is below the LLOQ.
        """
        theta, chol = self.sample_population()
        n_id = data.n_id
        if chol is not None:
            k = len(self.eta_names)
            with numpyro.plate("ID", n_id):
                if self.random.is_partially_centered:
                    eta_mat = self._sample_partial_eta(theta, chol, data)
                elif self.random.mu is not None:
                    mu = self.mu_matrix(theta, data)
                    phi = numpyro.sample("phi_eta", dist.MultivariateNormal(mu, scale_tril=chol))
                    eta_mat = phi - mu
                elif self.random.centered:
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
        kappa = self.sample_iov(data)
        ind, err, ok = self.predict_subjects(theta, eta, data, kappa=kappa, combined=True)
        if hasattr(self.dynamics, "solve_status"):
            # A failed ODE solve makes the proposal impossible (log density -inf) instead of
            # NaN; ``solver_ok`` lets simulations name the subjects that failed.
            numpyro.deterministic("solver_ok", ok)
            numpyro.factor("solver_failure", jnp.where(jnp.all(ok), 0.0, -jnp.inf))
            SOLVER_FAILURES.record(ok)
        for k, v in ind.items():
            numpyro.deterministic(k, jnp.broadcast_to(v, (n_id,)))
        name = self.output_name()
        numpyro.deterministic("IPRED", err.ipred)
        with numpyro.plate("obs", data.n_obs):
            if data.obs_mask is None:
                y = numpyro.sample(name, err.distribution(), obs=DV)
            else:
                with numpyro.handlers.mask(mask=data.obs_mask):
                    y = numpyro.sample(name, err.distribution(), obs=DV)
        if DV is not None:
            # Pointwise log-likelihood, computed once per kept draw inside the compiled
            # sampling loop (cheaper than a separate pass afterwards).
            loglik = err.distribution().log_prob(DV)
            if data.obs_mask is not None:
                loglik = jnp.where(data.obs_mask, loglik, 0.0)
            numpyro.deterministic(f"loglik_{name}", loglik)
        elif data.obs_lloq is not None:
            numpyro.deterministic("BLQ", y < data.obs_lloq)

    def _sample_partial_eta(self, theta: Mapping, chol, data: ModelData):
        """Sample ``eta_partial`` (``IIV(centered=[names])``); return ETA, (n_id, n_eta).

        With ``c`` the centred columns: ``u[:, c] = MU + ETA`` and ``u[:, ~c] = z``, so
        ``u ~ N(loc, S S')`` with ``loc = MU`` in ``c`` (0 elsewhere) and ``S`` = ``chol``
        on ``c x c``, the identity on ``~c x ~c``. ``chol`` (the Cholesky factor of OMEGA)
        is zero between independent blocks, and a block is all in ``c`` or all out (checked
        by :class:`IIV`), so ``S S'`` is block-diagonal with OMEGA's centred blocks, and
        ``ETA[:, ~c] = z @ chol[~c, ~c]'``.
        """
        cen = set(self.random.centered_names)
        c = jnp.array([n in cen for n in self.eta_names])
        both_c = c[:, None] & c[None, :]
        both_nc = ~c[:, None] & ~c[None, :]
        eye = jnp.eye(len(self.eta_names))
        mu = self.mu_matrix(theta, data)
        u = numpyro.sample(
            "eta_partial",
            dist.MultivariateNormal(jnp.where(c, mu, 0.0), scale_tril=jnp.where(both_c, chol, eye)),
        )
        return jnp.where(c, u - mu, u @ jnp.where(both_nc, chol, 0.0).T)

    def predict_subjects(
        self,
        theta: Mapping,
        eta: Mapping,
        data: ModelData,
        kappa: Mapping | None = None,
        combined: bool = False,
    ):
        """Vectorised ``subject`` over all units, outputs gathered onto the flat ``obs``.

        Parameters
        ----------
        theta : mapping of str to scalar
        eta : mapping of str to array, shape (n_id,)
        data : ModelData
        kappa : mapping of str to array, shape (n_id, n_occ), optional
            ``kappa_<name>`` with IOV (0 when omitted).
        combined : bool, default False
            Return one error model for the ``obs`` vector (:meth:`combine`: endpoints and
            censoring applied) instead of the dict of outputs.

        Returns
        -------
        ind : dict of str to array, shape (n_id,)
            Individual parameters per subject (with IOV: without the occasion effects).
        outputs : dict of str to AbstractError with fields of shape (n_obs,), or one
            AbstractError when ``combined``
        ok : bool array, shape (n_id,)
            False where the structural model's solver failed for some unit of the subject
            (always True for analytic models); the amounts of such units are placeholders.

        Notes
        -----
        With covariate intervals (``data.int_start`` not None, time-varying covariates)
        each unit goes through :meth:`subject_intervals` and ``ind`` holds the parameters
        at the subjects' baseline covariates.
        """
        doses = data.doses
        kappa = dict(kappa or {})
        if data.unit_id is None:
            eta_u, cov_u = dict(eta), data.covariates
        else:
            eta_u = {k: v[data.unit_id] for k, v in eta.items()}
            for n in self.kappa_names:
                kap = kappa.get(f"kappa_{n}")
                eta_u[f"kappa_{n}"] = (
                    jnp.zeros(data.n_unit) if kap is None else kap[data.unit_id, data.unit_occ]
                )
            cov_u = data.covariates

        if data.int_start is None:

            def one(eta_i, cov_i, doses_i, times_i):
                return self.subject_status(theta, eta_i, cov_i, doses_i, times_i)

            ind, outputs, ok = jax.vmap(one)(eta_u, cov_u, doses, data.obs_time)
        else:  # time-varying covariates: covariate intervals, amounts carried across

            def one(eta_i, cov_i, doses_i, times_i, start_i, mask_i):
                return self.subject_intervals(
                    theta, eta_i, cov_i, doses_i, times_i, start_i, mask_i
                )

            ind, outputs, ok = jax.vmap(one)(
                eta_u, data.int_covariates, doses, data.obs_time, data.int_start, data.int_mask
            )
        s, j = data.obs_unit, data.obs_slot
        outputs = {k: jax.tree_util.tree_map(lambda x: x[s, j], v) for k, v in outputs.items()}
        if data.unit_id is not None:
            # axis_size: a model without ETAs and covariates passes two empty dicts
            ind = jax.vmap(lambda e, c: self.individual(theta, e, c), axis_size=data.n_id)(
                eta, data.id_covariates
            )
            ok = jnp.ones(data.n_id, jnp.int32).at[data.unit_id].min(ok.astype(jnp.int32)) > 0
        if combined:
            outputs = self.combine(outputs, data.obs_which, data.obs_cens, data.obs_lloq)
        return ind, outputs, ok
