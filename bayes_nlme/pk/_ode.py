"""User-defined structural models: an ODE right-hand side solved with diffrax between events.

The user writes ``rhs(t, amounts, params)`` for ONE subject; :class:`ODE` adds the dosing
(bolus jumps, zero-order infusions, lag times, bioavailability, NONMEM conventions identical
to the analytic models of :mod:`bayes_nlme.pk._analytic`) and integrates piecewise between
events, so that the solver never steps across a discontinuity. By default a built-in adaptive
Runge-Kutta loop (diffrax's Tsit5 tableau and step-size rule, all events of a subject in ONE
``lax.while_loop``) integrates the amounts and their forward sensitivities (a
``jax.custom_jvp``); implicit solvers and reverse-mode derivatives go through
``diffrax.diffeqsolve``. Solver failures give NaN amounts and ``ok = False``
(:meth:`ODE.solve_status`), never an exception under ``jit``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jax.custom_derivatives import SymbolicZero

from .._errors import BayesNLMEError, ModelError
from ._analytic import (
    _dose_infusions,
    _LinearPK,
    _modeled_rate_problem,
    _reset_times,
    _ss_code_problem,
)
from ._base import AbstractPKModel

__all__ = ["ODE", "ODESolveError"]


#: Prefix of the pseudo-parameters that carry ``initial`` amounts through the solve (they
#: enter the parameter vector so that forward sensitivities cover them).
_INIT = "__initial_amount_"


class _PKDoses(NamedTuple):
    """The dose fields a closed-form ``pk`` model reads (no steady state)."""

    time: Any
    amt: Any
    rate: Any
    cmt: Any
    mask: Any


#: Newton iterations of the steady-state root solve (see ``ODE``, Notes) and their
#: stopping rule: every component's step below this fraction of ``atol + rtol |amount|``.
_SS_MAX_NEWTON = 25
_SS_NEWTON_TOL = 1e-2


class ODESolveError(BayesNLMEError, RuntimeError):
    """The ODE solver failed (too many steps, step size collapse, or non-finite amounts)."""


class _Names:
    """Read-only named access to values: ``x.Central`` or ``x["Central"]``.

    Deliberately minimal (no ``values``/``get`` methods) so that almost any compartment or
    parameter name works as an attribute.
    """

    __slots__ = ("_kind", "_values")

    def __init__(self, kind: str, values: Mapping[str, Any]):
        object.__setattr__(self, "_kind", kind)
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise ModelError(
                f"{self._kind} has no {name!r}; available: {', '.join(self._values) or 'none'}."
            ) from None

    def __getitem__(self, name: str) -> Any:
        return self.__getattr__(name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{self._kind} is read-only")

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def keys(self):
        return self._values.keys()

    def __repr__(self) -> str:
        return f"{self._kind}({', '.join(self._values)})"


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _solve_forward(model: ODE, keys: tuple, pvec: Any, data: tuple) -> tuple[Any, Any]:
    """``model._solve`` as a function of the parameter vector ``pvec`` (names ``keys``).

    Differentiated by forward sensitivities (see :meth:`ODE._solve`): the JVP rule solves
    the sensitivity system alongside the ODE and returns ``J @ dp``; reverse mode
    (``jax.grad``) transposes it into ``J.T @ cotangent``, with no backward solve.
    """
    out, ok, _ = model._solve(keys, pvec, data, sens=False)
    return out, ok


@functools.partial(_solve_forward.defjvp, symbolic_zeros=True)
def _solve_forward_jvp(model, keys, primals, tangents):
    pvec, data = primals
    dp, ddata = tangents
    if any(not isinstance(x, SymbolicZero) for x in jax.tree_util.tree_leaves(ddata)):
        raise NotImplementedError(
            "ODE(sensitivities='forward') is differentiable with respect to the individual "
            "parameters only, not the dose records or evaluation times; use "
            "ODE(..., sensitivities='reverse') for that."
        )
    out, ok, jac = model._solve(keys, pvec, data, sens=True)  # jac: (n_time, n_cmt, n_p)
    ok_dot = np.zeros(jnp.shape(ok), jax.dtypes.float0)
    if isinstance(dp, SymbolicZero):
        return (out, ok), (jnp.zeros_like(out), ok_dot)
    return (out, ok), (jac @ dp, ok_dot)


def _head_norm(z: Any, n: int) -> Any:
    """Error norm of the augmented state ``z = [y, vec(S)]`` that looks at ``y = z[:n]``
    only: the step sizes, hence the solution, are exactly those of the plain solve."""
    return optx.rms_norm(z[:n])


class ODE(AbstractPKModel):
    r"""A structural model given by an ODE right-hand side, solved numerically with diffrax.

    Parameters
    ----------
    rhs : callable ``rhs(t, amounts, params) -> dict or array``
        Right-hand side for ONE subject, written with ``jax.numpy``. ``t`` is the time
        (scalar); ``amounts`` gives each compartment's amount by name (``amounts.Central`` or
        ``amounts["Central"]``, scalars); ``params`` the individual parameters
        (``params.CL`` or ``params["CL"]``: every name in ``required``, plus whatever else the
        caller passes, e.g. ``F1``). Return the time derivative of EVERY compartment: a dict
        keyed by all the compartment names, or an array of shape ``(n_cmt,)`` in
        ``compartments`` order. Do not model the doses: bolus doses and infusions are added
        by the engine.
    compartments : sequence of str, default ``("Depot", "Central")``
        Compartment names in NONMEM CMT order (``compartments[0]`` is CMT 1).
    required : sequence of str, default ``("KA", "CL", "V")``
        Individual parameters the model needs; a missing one is an error.
    default_dose_cmt : int, default 1
        The 1-based CMT that doses with CMT 0 (no CMT column in the data) go to.
    solver : diffrax.AbstractSolver, optional
        Default ``diffrax.Tsit5()`` (explicit 5th-order Runge-Kutta; best for non-stiff PK
        systems). Use an implicit solver such as ``diffrax.Kvaerno5()`` for stiff systems
        (rate constants spanning many orders of magnitude, e.g. fast binding in TMDD models).
    rtol, atol : float, default 1e-8, 1e-10
        Relative and absolute tolerances of the adaptive step-size controller
        (``diffrax.PIDController``): the local error of each compartment is kept below
        ``atol + rtol * |amount|``. ``atol`` is in amount (dose) units and only matters for
        amounts below ``atol / rtol`` (1e-2 dose units by default). The defaults are chosen
        for doses of order 1-1000 (mg): the global error is about 1e-9 of the peak amount
        and 1e-8 pointwise (small early concentrations included), so the numerical error
        is invisible next to residual error and the log density is smooth for NUTS.
        ``rtol=1e-6, atol=1e-8`` takes about half the steps (time) with errors of about
        1e-7 of the peak and 2e-6 pointwise, still ample for inference. Scale ``atol``
        with the dose unit (e.g. ``atol=1e-7`` for doses in ug of order 1e5).
    max_steps : int, default 4096
        Maximum number of solver steps (accepted or rejected) per segment between two
        events; with the built-in integrator the steps shortened to land on an evaluation
        time count too. Exceeding it is a solver failure (see below), never an exception
        under ``jit``.
    dt0 : float, optional
        Initial step size of every segment; default: chosen automatically (Hairer's
        algorithm, two extra right-hand-side evaluations per segment).
    sensitivities : {"forward", "reverse"}, default "forward"
        How derivatives are computed. ``"forward"``: forward sensitivity equations
        integrated with the state (see Notes); ``jax.grad`` costs about 2-3x a plain
        solve, compiles faster, and is exact for the discrete solution. Derivatives are
        then available w.r.t. the individual parameters only (not dose records or times;
        asking raises ``NotImplementedError``). ``"reverse"``: differentiate through the
        solver with diffrax's ``RecursiveCheckpointAdjoint`` (any input, slower:
        about 5-9x a plain solve, with slower compilation); prefer it only with many
        (dozens of) individual parameters, since the forward cost grows with their number.
    integrator : {"auto", "diffrax"}, default "auto"
        ``"auto"``: with an explicit Runge-Kutta ``solver`` (``Tsit5``, ``Dopri5``,
        ``Dopri8``, ``Bosh3``, ...) and ``sensitivities="forward"``, the built-in loop (see
        Method): the same tableau and step-size rule as diffrax, 1.5-6x faster (most
        with few subjects; ``bench/README.md``); otherwise ``diffrax.diffeqsolve``.
        ``"diffrax"``: always ``diffrax.diffeqsolve``, one solve per segment between events
        (the previous implementation, kept for comparison).
    pk : analytic model, optional
        A closed-form PK model (e.g. ``bn.pk.Depots1Central1()``) that drives the ODE, as
        nlmixr2's ``linCmt()`` inside an ODE model and Torsten's coupled solvers
        (``pmx_solve_onecpt_rk45``). Its compartments come first (CMT ``1..n_pk``, with
        its names), then ``compartments`` (CMT ``n_pk + 1 ...``); ``required`` is added to
        the PK model's. ``rhs`` sees every compartment in ``amounts``, the PK ones at
        their closed-form value, and returns the derivatives of ``compartments`` only.
        Doses into PK compartments (``ALAG``/``F``/infusions as usual) are applied by
        the closed form; doses into ODE compartments by the engine. Use it for PK/PD
        models with linear PK: the ODE holds only the PD states, and it no longer
        carries the fast absorption rate, which makes an explicit solver take steps of
        order ``1 / KA`` over the whole time span (stiffness; see Performance). Needs the
        built-in integrator (an explicit ``solver``, ``sensitivities="forward"``,
        ``integrator="auto"``) and supports neither steady-state doses (SS > 0) nor
        ``initial`` amounts (so no time-varying covariates): both raise ``ModelError``.

    Attributes
    ----------
    compartments : tuple of str
        All compartments, the ``pk`` model's first.
    ode_compartments : tuple of str
        The compartments integrated numerically (``compartments`` as given).
    default_dose_cmt : int
    required : tuple of str
    solver, rtol, atol, max_steps, dt0, sensitivities, integrator, pk
        The options above.

    Notes
    -----
    **Events (NONMEM conventions, identical to the analytic models).** A dose event of
    amount ``AMT`` into CMT ``c`` at time ``t_d``:

    * bolus (``RATE == 0``): the amount jumps by ``F_c * AMT`` at ``t_d + ALAG_c``;
    * zero-order infusion (``RATE = R > 0``): a constant input ``R`` into ``c`` from
      ``t_d + ALAG_c`` for a duration ``F_c * AMT / R`` (bioavailability changes the
      duration, not the rate); overlapping infusions add up;
    * modelled infusion (NONMEM): ``RATE = -1`` at the rate ``R<c>`` (a parameter) for
      ``F_c * AMT / R<c>``; ``RATE = -2`` for the duration ``D<c>`` at ``F_c * AMT / D<c>``.
      The infusion's end (a segment boundary) and its input rate then depend on the
      parameters; both enter the forward sensitivities (see Derivatives).

    ``F<c>`` (default 1) and ``ALAG<c>`` (default 0) are read from ``params``. The state is
    zero until the first (lagged) dose: evaluation times before it give zero amounts, and
    the initial condition is zero (an ``rhs`` with a non-zero derivative at zero amounts,
    e.g. endogenous production, starts from zero at the first dose, not at a baseline).
    An evaluation time equal to a (lagged) dose time includes that dose. Events with
    ``mask`` False change nothing; ``cmt`` 0 means ``default_dose_cmt``. A negative RATE
    other than -1/-2, RATE -1 (-2) into CMT ``c`` without ``R<c>`` (``D<c>``) in
    ``params``, an SS code other than 0/1/2 and the steady-state limitation below raise
    ``ModelError`` when the dose arrays are concrete; traced (under ``jit``/``vmap``) they
    give NaN amounts and ``ok = False``, so check the data eagerly.

    **Steady state** (``Doses.ss`` 1 or 2 with interval ``Doses.ii`` > 0; NONMEM
    semantics, as in the analytic models). ``SS = 1`` at record time ``t_d``: the system
    is reset (earlier doses, running infusions included, stop acting; record order
    decides at equal times), the compartments take the steady-state amounts ``x*`` of
    "this dose every II" just before the dose, then the dose itself is given (with its
    ``ALAG``/``F``/rate). ``SS = 2``: ``x*`` is added to the current state without a reset
    (exact for linear systems; for nonlinear ones it is NONMEM's approximation). Method
    (a root solve): ``x*`` is the fixed point of the one-interval cycle map ``G(x)`` (the
    amounts at ``t_d + II`` starting from ``x`` at ``t_d`` with the dose at ``t_d``),
    found by Newton's method from zero with ``dG/dx`` from the forward sensitivities: one
    step for linear systems (up to solver error), a few for nonlinear ones (at most 25;
    stopped when every step is below 1% of ``atol + rtol |x|``). Derivatives use the
    implicit function theorem, ``dx*/dp = (I - dG/dx)^-1 dG/dp``. Limitation: the dose's
    input must lie within one interval, ``ALAG + infusion duration <= II`` (the analytic
    models have no such limit); a longer one is an error (NaN when traced), as is a
    Newton iteration that does not converge. Cost: every dose slot of a subject is given
    a steady-state solve whenever the data carry SS fields (``Model`` passes them only
    when some dose has SS > 0), about ``2 + Newton steps`` one-interval solves each.

    **Method.** The (lagged) start and end times of all events are sorted into a fixed-size
    array of ``2 * n_dose`` breakpoints (padding and bolus "ends" are parked at the last
    time, as empty segments). Every discontinuity is thus a segment boundary: the solver
    restarts there and never steps across it, which keeps its error control (and its
    accuracy) intact. Built-in integrator (default): one ``lax.while_loop`` per subject;
    each iteration applies the next event when it is due (bolus jump, infusion input,
    sensitivity jump, fresh step size), saves the state at the evaluation times equal to
    the current time, and takes one Runge-Kutta step clipped to the next event and the
    next evaluation time (so evaluation times are hit exactly, no interpolation), accepted
    or rejected by diffrax's default controller (``PIDController(rtol, atol)`` as an
    I-controller: safety 0.9, step factors 0.2-10). ``integrator="diffrax"`` (and implicit
    solvers or reverse sensitivities): a ``lax.scan`` over the segments, each integrated
    with ``diffrax.diffeqsolve`` and saved at its evaluation times by dense output. Shapes
    are static, so the model is ``jit``-, ``vmap``- and ``grad``-compatible.

    **Derivatives** w.r.t. every entry of ``params`` (``ALAG<c>``, ``F<c>``, ``R<c>`` and
    ``D<c>`` included, which move segment boundaries, change jump sizes and infusion
    rates). With ``sensitivities="forward"``
    (a ``jax.custom_jvp``; reverse mode transposes it) the sensitivities
    ``S = d amounts / d params`` are integrated together with the amounts,
    ``S' = (df/dA) S + df/dp + dr/dp`` (Jacobian-vector products of ``rhs``; ``r`` the
    infusion input, parameter-dependent for RATE -1/-2), by the same solver
    on the same steps (the error control looks at the amounts only), so ``S`` is the exact
    derivative of the computed solution; at each segment start ``b`` they jump by
    ``(f(b-) - f(b+)) db/dp + d(jump)/dp``. The derivative at an evaluation time exactly
    at a (lagged) dose time is one-sided, from the side where the dose is included, as in
    the analytic models.

    **Solver failure.** The solve uses ``throw=False``. When any segment fails (maximum
    number of steps reached, step size collapsed, non-finite amounts), :meth:`amounts`
    returns amounts filled with NaN and :meth:`solve_status` returns ``ok = False``; no
    exception is raised under ``jit``/``vmap``. Eagerly, :meth:`raise_if_failed` raises an
    :class:`ODESolveError` whose message (:meth:`failure_message`) lists the remedies.

    **Accuracy.** On the linear models the error against the closed forms is about 1e-9
    of the peak amount at the default tolerances (gradients: 1e-8 relative), and it
    decreases as ``rtol`` / ``atol`` tighten (about 1e-5, 1e-7, 1e-9, 1e-11 at
    ``rtol`` = 1e-4, 1e-6, 1e-8, 1e-10 with ``atol = rtol / 100``).

    **Performance.** The step size restarts at every event, so the cost grows with the
    number of dose events, the tolerance and the stiffness; with ``Tsit5`` at the default
    tolerances a 12-hour dosing interval with ``KA`` = 1.3/h takes about 110 steps, half
    as many at ``rtol=1e-6, atol=1e-8``. Tight ``atol`` is what costs: amounts below
    ``atol / rtol`` (e.g. a depot emptied by absorption) are followed to ``atol``. Under
    ``vmap`` the loop runs until the slowest subject is done, and on CPU the cost is about
    the sum over subjects (linear in their number). Explicit solvers are
    stability-limited in long terminal phases (steps of order ``1 / fastest rate``), so
    evaluation times far beyond the last dose cost steps; padding times should be small
    (the dataset pads with 0). Measured on a 2-core CPU (``bench/README.md``), value and
    gradient of the log density: Theophylline (12 subjects, one dose) about 0.5-0.8 ms, 6-9x
    the closed form; a 2-compartment model with 3 doses about 150-500 us per subject,
    13-120x the closed form (whose cost per subject is tiny). Use the analytic models when
    the system is linear. Compilation takes a few seconds.

    Examples
    --------
    Michaelis-Menten elimination after first-order absorption, concentration
    ``C = Central / V``:

    >>> import diffrax
    >>> import bayes_nlme as bn
    >>> def rhs(t, a, p):
    ...     c = a.Central / p.V
    ...     return {
    ...         "Depot": -p.KA * a.Depot,
    ...         "Central": p.KA * a.Depot - p.VM * c / (p.KM + c),
    ...     }
    >>> mm = bn.pk.ODE(rhs, ("Depot", "Central"), ("KA", "V", "VM", "KM"))
    >>> mm_stiff = bn.pk.ODE(
    ...     rhs, ("Depot", "Central"), ("KA", "V", "VM", "KM"), solver=diffrax.Kvaerno5()
    ... )

    ``mm.amounts(params, doses, times)`` then returns shape ``(n_time, 2)``.

    A turnover (indirect response) PD model driven by closed-form one-compartment oral PK,
    the inhibition of the response's input by the concentration:

    >>> def pd(t, a, p):
    ...     c = a.Central / p.V
    ...     return {"Effect": p.KIN * (1 - c / (p.IC50 + c)) - p.KOUT * a.Effect}
    >>> turnover = bn.pk.ODE(
    ...     pd, ("Effect",), ("KIN", "KOUT", "IC50"), pk=bn.pk.Depots1Central1()
    ... )
    >>> turnover.compartments
    ('Depot', 'Central', 'Effect')
    """

    def __init__(
        self,
        rhs: Callable[..., Any],
        compartments: Iterable[str] = ("Depot", "Central"),
        required: Iterable[str] = ("KA", "CL", "V"),
        *,
        default_dose_cmt: int = 1,
        solver: Any = None,
        rtol: float = 1e-8,
        atol: float = 1e-10,
        max_steps: int = 4096,
        dt0: float | None = None,
        sensitivities: str = "forward",
        integrator: str = "auto",
        pk: AbstractPKModel | None = None,
    ):
        if not callable(rhs):
            raise ModelError(
                f"ODE(rhs, ...) needs a callable rhs(t, amounts, params); got {rhs!r}."
            )
        if isinstance(compartments, str):
            compartments = (compartments,)
        comps = tuple(compartments)
        if not comps or not all(isinstance(c, str) and c for c in comps):
            raise ModelError(f"compartments must be non-empty names (str); got {comps!r}.")
        if len(set(comps)) != len(comps):
            raise ModelError(f"compartment names must be unique; got {list(comps)}.")
        if isinstance(required, str):
            required = (required,)
        req = tuple(required)
        if not all(isinstance(r, str) and r for r in req):
            raise ModelError(f"required must be parameter names (str); got {req!r}.")
        if pk is not None:
            if not isinstance(pk, _LinearPK):
                raise ModelError(
                    f"pk must be an analytic PK model such as bn.pk.Depots1Central1(); got {pk!r}."
                )
            clash = sorted(set(pk.compartments) & set(comps))
            if clash:
                raise ModelError(
                    f"the ODE compartments {list(comps)} repeat the pk model's compartments "
                    f"{list(pk.compartments)}: {clash}; give the PD states other names."
                )
            ode_comps = comps
            comps = tuple(pk.compartments) + comps
            req = tuple(dict.fromkeys(tuple(pk.required) + req))
        else:
            ode_comps = comps
        n = len(comps)
        if isinstance(default_dose_cmt, bool) or not isinstance(default_dose_cmt, int | np.integer):
            raise ModelError(f"default_dose_cmt must be an int in 1..{n}.")
        if not 1 <= int(default_dose_cmt) <= n:
            raise ModelError(
                f"default_dose_cmt={default_dose_cmt} is not a CMT of {list(comps)} (1..{n})."
            )
        solver = diffrax.Tsit5() if solver is None else solver
        if not isinstance(solver, diffrax.AbstractSolver):
            raise ModelError(
                f"solver must be a diffrax solver such as diffrax.Tsit5() or diffrax.Kvaerno5(); "
                f"got {solver!r}."
            )
        if not (rtol > 0 and atol >= 0):
            raise ModelError(f"need rtol > 0 and atol >= 0; got rtol={rtol}, atol={atol}.")
        if int(max_steps) < 1:
            raise ModelError(f"max_steps must be a positive int; got {max_steps}.")
        if dt0 is not None and not dt0 > 0:
            raise ModelError(f"dt0 must be positive or None; got {dt0}.")
        if sensitivities not in ("forward", "reverse"):
            raise ModelError(
                f"sensitivities must be 'forward' or 'reverse'; got {sensitivities!r}."
            )
        if integrator not in ("auto", "diffrax"):
            raise ModelError(f"integrator must be 'auto' or 'diffrax'; got {integrator!r}.")
        self.rhs = rhs
        self.sensitivities = sensitivities
        self.integrator = integrator
        self.compartments = comps
        self.ode_compartments = ode_comps
        self.pk = pk
        self.required = req
        self.default_dose_cmt = int(default_dose_cmt)
        self.solver = solver
        self.rtol = float(rtol)
        self.atol = float(atol)
        self.max_steps = int(max_steps)
        self.dt0 = None if dt0 is None else float(dt0)
        # the built-in loop: explicit Runge-Kutta tableaus, forward sensitivities
        self._builtin = (
            integrator == "auto"
            and sensitivities == "forward"
            and isinstance(solver, diffrax.AbstractERK)
        )
        if pk is not None and not self._builtin:
            raise ModelError(
                "ODE(..., pk=...) needs the built-in integrator: an explicit Runge-Kutta "
                "solver (the default Tsit5, or Dopri5/Dopri8/Bosh3), "
                "sensitivities='forward' and integrator='auto'; got "
                f"solver={type(solver).__name__}(), sensitivities={sensitivities!r}, "
                f"integrator={integrator!r}."
            )

    supports_initial = True

    def __repr__(self) -> str:
        name = getattr(self.rhs, "__name__", type(self.rhs).__name__)
        return (
            f"ODE({name}, compartments={self.ode_compartments}, required={self.required}, "
            f"solver={type(self.solver).__name__}(), rtol={self.rtol:g}, atol={self.atol:g}, "
            f"max_steps={self.max_steps}"
            + ("" if self.integrator == "auto" else f", integrator={self.integrator!r}")
            + ("" if self.pk is None else f", pk={self.pk!r}")
            + ")"
        )

    # ------------------------------------------------------------------ checks
    def _read_params(self, params: Mapping[str, Any], dtype: Any) -> dict[str, Any]:
        missing = [name for name in self.required if name not in params]
        if missing:
            raise ModelError(
                f"{self!r} requires parameters {list(self.required)}; missing {missing}. "
                f"Optional: {list(self.optional)}."
            )
        return {str(k): jnp.asarray(v, dtype) for k, v in params.items()}

    def _check_doses(self, doses: Any, params: Mapping[str, Any]) -> None:
        """Eager sanity checks of CMT and RATE when they are concrete (skipped when traced)."""
        try:
            cmt = np.asarray(doses.cmt)
            rate = np.asarray(doses.rate)
            mask = np.asarray(doses.mask, bool)
        except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
            return
        problem = self.cmt_problem(cmt, mask, who="The ODE model")
        if problem is not None:
            raise ModelError(problem)
        problem = _modeled_rate_problem(params, cmt, rate, mask, self.default_dose_cmt)
        if problem is not None:
            raise ModelError(problem)
        ss, ii = getattr(doses, "ss", None), getattr(doses, "ii", None)
        if ss is None or ii is None:
            return
        try:
            ss, ii = np.asarray(ss), np.asarray(ii, float)
            d_time, amt = np.asarray(doses.time, float), np.asarray(doses.amt, float)
        except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
            return
        problem = _ss_code_problem(ss, ii, mask)
        if problem is not None:
            raise ModelError(problem)
        is_ss = mask & (ss > 0)
        if not is_ss.any():
            return
        # the steady-state cycle must hold each dose's whole input: ALAG + duration <= II
        try:
            pc = {k: np.asarray(v, float) for k, v in params.items()}
        except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
            return
        n = len(self.compartments)
        cmt0 = np.where(cmt == 0, self.default_dose_cmt, cmt)
        lag = np.array([pc.get(f"ALAG{c}", 0.0) if 1 <= c <= n else 0.0 for c in cmt0])
        f = np.array([pc.get(f"F{c}", 1.0) if 1 <= c <= n else 1.0 for c in cmt0])
        r = np.array([pc.get(f"R{c}", np.nan) if 1 <= c <= n else np.nan for c in cmt0])
        dur_par = np.array([pc.get(f"D{c}", np.nan) if 1 <= c <= n else np.nan for c in cmt0])
        with np.errstate(divide="ignore", invalid="ignore"):
            dur = np.where(
                rate > 0,
                f * amt / np.where(rate > 0, rate, 1.0),
                np.where(rate == -1, f * amt / r, np.where(rate == -2, dur_par, 0.0)),
            )
        too_long = is_ss & (lag + dur > ii * (1 + 1e-12))
        if too_long.any():
            k = int(np.flatnonzero(too_long)[0])
            raise ModelError(
                f"steady-state dose at TIME {d_time[k]:g} (II {ii[k]:g}): its input (ALAG "
                f"{lag[k]:g} + infusion duration {dur[k]:g}) extends beyond the dosing "
                f"interval, which ODE models do not support (the steady state is found over "
                f"one interval). Use an analytic model, or give the doses as explicit "
                f"events (ADDL/II)."
            )

    def _derivative(self, t: Any, y: Any, params: Mapping[str, Any], forcing: Any = None) -> Any:
        """Call the user's rhs and return its output as an array of shape (n_cmt,).

        With ``pk``, ``forcing`` (n_pk,) holds the closed-form PK amounts at ``t``: ``rhs``
        sees them in place of the (unused) PK rows of ``y``, and the PK rows' derivative is
        zero.
        """
        names = self.ode_compartments
        n = len(names)
        n_pk = len(self.compartments) - n
        values = {c: y[n_pk + i] for i, c in enumerate(names)}
        if n_pk:
            pk_amounts = jnp.zeros(n_pk, y.dtype) if forcing is None else forcing
            values = {c: pk_amounts[i] for i, c in enumerate(self.pk.compartments)} | values
        amounts = _Names("amounts", values)
        out = self.rhs(t, amounts, _Names("params", params))
        expect = (
            f"rhs(t, amounts, params) must return the derivative of every compartment "
            f"{list(names)}: a dict keyed by these names or an array of shape ({n},)"
        )
        if isinstance(out, Mapping):
            keys = list(out)
            missing = [c for c in names if c not in out]
            unknown = [k for k in keys if k not in names]
            if missing or unknown:
                raise ModelError(
                    f"{expect}; got keys {keys} (missing {missing}, unknown {unknown})."
                )
            vals = []
            for c in names:
                v = jnp.asarray(out[c], y.dtype)
                if v.shape != ():
                    raise ModelError(
                        f"{expect}; the derivative of {c!r} has shape {v.shape}, expected a scalar."
                    )
                vals.append(v)
            arr = jnp.stack(vals)
        else:
            try:
                arr = jnp.asarray(out, y.dtype)
            except (TypeError, ValueError) as err:
                raise ModelError(f"{expect}; got {type(out).__name__}.") from err
            if arr.shape != (n,):
                raise ModelError(f"{expect}; got an array of shape {arr.shape}.")
        if n_pk:
            arr = jnp.concatenate([jnp.zeros(n_pk, y.dtype), arr])
        return arr

    def _vector_field(self, t: Any, y: Any, args: Any) -> Any:
        params, rates = args
        return self._derivative(t, y, params) + rates

    # ------------------------------------------------------------------ solve
    def solve_status(
        self, params: Mapping[str, Any], doses: Any, times: Any, initial: Any = None
    ) -> tuple[Any, Any]:
        """Amounts at ``times`` for one subject, and whether the solver succeeded.

        Parameters
        ----------
        params, doses, times, initial
            As in :meth:`amounts`.

        Returns
        -------
        amounts : array, shape (n_time, n_cmt)
            As :meth:`amounts`: all NaN when ``ok`` is False; rows of non-finite ``times``
            are NaN.
        ok : bool array, shape ()
            False when a segment of the solve failed (maximum number of steps reached, step
            size collapsed, non-finite state). Under ``vmap`` one flag per subject; count
            failures with ``jnp.sum(~ok)``.
        """
        dtype = jnp.result_type(float)
        p = self._read_params(params, dtype)
        self._check_doses(doses, p)
        n = len(self.compartments)
        t = jnp.asarray(times, dtype)
        if t.ndim != 1:
            raise ModelError(f"times must have shape (n_time,); got {t.shape}.")
        n_time = t.shape[0]
        # validate rhs once, abstractly (no computation; clear error before diffrax traces it)
        jax.eval_shape(self._derivative, jnp.zeros((), dtype), jnp.zeros(n, dtype), p)

        n_dose = jnp.shape(doses.time)[0]
        ss = getattr(doses, "ss", None)
        ii = getattr(doses, "ii", None)
        if self.pk is not None and initial is not None:
            raise ModelError(
                "ODE(..., pk=...) does not support initial amounts (used for time-varying "
                "covariates); write the PK part in the ODE instead."
            )
        if self.pk is not None and ss is not None and ii is not None:
            raise ModelError(
                "ODE(..., pk=...) does not support steady-state doses (SS > 0); give the "
                "doses as explicit events (ADDL/II), or write the PK part in the ODE."
            )
        if (n_dose == 0 and initial is None) or n_time == 0:
            return jnp.zeros((n_time, n), dtype), jnp.asarray(True)
        # jnp.array (a copy, free under jit), not asarray: a NumPy array vmapped into the
        # custom_jvp below otherwise trips JAX ("non-canonical constant")
        # data = (time, amt, rate, cmt, mask, extra, times); extra holds the optional
        # initial-amount time "t0" and the steady-state fields "ss", "ii"
        extra = {}
        if ss is not None and ii is not None:
            extra["ss"] = jnp.array(ss, jnp.int32)
            extra["ii"] = jnp.array(ii, dtype)
        if initial is not None:
            # the initial amounts become parameters (differentiable by the forward
            # sensitivities), their time an extra event
            t0, a0 = initial
            a0 = jnp.asarray(a0, dtype)
            if a0.shape != (n,):
                raise ModelError(f"initial amounts must have shape ({n},); got {a0.shape}.")
            p = {**p, **{f"{_INIT}{k}": a0[k] for k in range(n)}}
            extra["t0"] = jnp.array(t0, dtype)
        data = (
            jnp.array(doses.time, dtype),
            jnp.array(doses.amt, dtype),
            jnp.array(doses.rate, dtype),
            jnp.array(doses.cmt),
            jnp.array(doses.mask, bool),
            extra,
            jnp.array(t),
        )
        keys = tuple(p)
        bad = [k for k in keys if p[k].shape != ()]
        if bad:
            raise ModelError(
                f"individual parameters must be scalars (one subject); got shapes "
                f"{ {k: p[k].shape for k in bad} }."
            )
        pvec = jnp.stack([p[k] for k in keys])
        if self.sensitivities == "reverse":
            out, ok, _ = self._solve(keys, pvec, data, sens=False)
        else:
            out, ok = _solve_forward(self, keys, pvec, data)
        if "ss" in extra:  # traced invalid SS codes or SS without II (concrete ones raised)
            ss_bad = (
                (extra["ss"] < 0) | (extra["ss"] > 2) | ((extra["ss"] > 0) & ~(extra["ii"] > 0))
            )
            ok = ok & ~jnp.any(data[4] & ss_bad)
        # traced invalid RATE codes or RATE -1/-2 without R<n>/D<n> (concrete ones raised)
        cmt0 = jnp.where(data[3] == 0, self.default_dose_cmt, data[3])
        onehot = (cmt0[:, None] == jnp.arange(1, n + 1)).astype(dtype)
        *_, bad = _dose_infusions(p, onehot, data[2], data[1], data[4], dtype)
        ok = ok & ~jnp.any(bad)
        if self.pk is not None:
            # the PK columns from the closed form (differentiated directly, exact); the
            # engine's PK rows only carried the dose events
            n_pk = len(self.pk.compartments)
            pk_out = self.pk.amounts(p, self._pk_doses(data), data[-1])
            out = jnp.concatenate([pk_out, out[:, n_pk:]], axis=1)
        out = jnp.where(ok, out, jnp.nan)
        return out, ok

    def _pk_doses(self, data: tuple, applied: Any = None) -> Any:
        """The doses the ``pk`` model sees: those into its compartments (CMT 0 mapped to
        ``default_dose_cmt``), and with ``applied`` (n_dose,) only those already given."""
        d_time, amt, rate, cmt, mask = data[:5]
        cmt = jnp.where(cmt == 0, self.default_dose_cmt, cmt)
        into_pk = cmt <= len(self.pk.compartments)
        mask = mask & into_pk
        cmt = jnp.where(into_pk, cmt, 1)  # doses into the ODE states: masked out
        if applied is not None:
            mask = mask & applied
        return _PKDoses(d_time, amt, rate, cmt, mask)

    def _events(self, keys: tuple, pvec: Any, data: tuple) -> tuple[tuple[Any, Any, Any], dict]:
        """Sorted segment start times, bolus jumps and infusion inputs, and aux.

        Returns ``(b, jump, seg_rates), aux`` (differentiable in ``pvec``): ``b`` (n_seg,)
        the segment starts, ``jump`` (n_seg, n_cmt) the bolus amounts added at each start,
        ``seg_rates`` (n_seg, n_cmt) the infusion input running in each segment (it depends
        on the parameters for modelled rates, RATE -1/-2); ``aux`` holds the segment ends
        ``b_next``, ``reset`` (n_seg,) (the state is set to zero before the jump: SS=1
        doses) and the sorted evaluation times with their segment.

        Event rows, in this order before the stable sort by time (so that at equal times
        the earlier row acts first): the initial amounts (``extra["t0"]``), one
        steady-state row per dose (SS 1: reset, then the steady-state amounts; SS 2: the
        amounts added; in record order), the (lagged) dose starts, the infusion ends.
        """
        p = dict(zip(keys, pvec, strict=True))
        d_time, amt, rate, cmt, mask, extra, t = data
        dtype = t.dtype
        n = len(self.compartments)
        n_dose = d_time.shape[0]
        cmt = jnp.where(cmt == 0, self.default_dose_cmt, cmt)

        f_vec = jnp.stack([jnp.asarray(p.get(f"F{k}", 1.0), dtype) for k in range(1, n + 1)])
        lag_vec = jnp.stack([jnp.asarray(p.get(f"ALAG{k}", 0.0), dtype) for k in range(1, n + 1)])
        onehot = (cmt[:, None] == jnp.arange(1, n + 1)).astype(dtype)  # (n_dose, n_cmt)
        f_d = jnp.sum(onehot * f_vec, axis=-1)
        lag_d = jnp.sum(onehot * lag_vec, axis=-1)

        dose_amt = f_d * amt
        # RATE > 0, -1 (rate R<c>) or -2 (duration D<c>): the end time, and the input rate
        # of a modelled infusion, depend on the parameters (moving segment boundaries)
        inf, r, duration, _ = _dose_infusions(p, onehot, rate, dose_amt, mask, dtype)
        is_inf = mask & inf
        is_bolus = mask & ~inf
        start = d_time + lag_d
        end = start + duration
        ss, ii = extra.get("ss"), extra.get("ii")
        if ss is not None:
            # an SS=1 dose resets the system at its record time: earlier doses (record
            # order) stop acting there, infusions included (NONMEM; as the analytic models)
            kill = _reset_times(d_time, mask, ss, ii)[0]
            live = start < kill
            is_inf = is_inf & live
            is_bolus = is_bolus & live
            end = jnp.where(end > kill, kill, end)
        inf_rate = jnp.where(is_inf, r, 0.0)

        # evaluation times: sorted (diffrax saves at increasing ts); non-finite ones are
        # parked at the first finite time and reported as NaN
        finite_t = jnp.isfinite(t)
        t_safe = jnp.where(finite_t, t, jnp.min(jnp.where(finite_t, t, jnp.inf)))
        t_safe = jnp.where(jnp.isfinite(t_safe), t_safe, 0.0)
        t_end = jnp.maximum(
            jnp.max(t_safe),
            jnp.max(jnp.where(is_inf, end, jnp.where(mask, start, -jnp.inf)), initial=-jnp.inf),
        )
        t0 = extra.get("t0")
        if t0 is not None:
            t_end = jnp.maximum(t_end, t0)

        # breakpoints: (lagged) starts, then infusion ends; padding parked at t_end
        bp = [jnp.where(mask, start, t_end), jnp.where(is_inf, end, t_end)]
        jump = [
            onehot * jnp.where(is_bolus, dose_amt, 0.0)[:, None],
            jnp.zeros((n_dose, n), dtype),
        ]
        reset = [jnp.zeros(n_dose, bool), jnp.zeros(n_dose, bool)]
        if ss is not None:  # steady-state rows at the record times, before the dose starts
            is_ss = mask & (ss > 0) & (ii > 0)
            x_ss = self._steady_state(keys, pvec, data, is_ss, lag_d + duration)
            bp.insert(0, jnp.where(is_ss, d_time, t_end))
            jump.insert(0, jnp.where(is_ss[:, None], x_ss, 0.0))
            reset.insert(0, is_ss & (ss == 1))
        if t0 is not None:  # initial amounts at t0: the first event (stable sort keeps it so)
            a0 = jnp.stack([p[f"{_INIT}{k}"] for k in range(n)])
            bp.insert(0, t0[None])
            jump.insert(0, a0[None, :])
            reset.insert(0, jnp.zeros(1, bool))
        bp, jump, reset = (jnp.concatenate(x) for x in (bp, jump, reset))
        order = jnp.argsort(bp, stable=True)
        b = bp[order]
        jump = jump[order]
        b_next = jnp.concatenate([b[1:], t_end[None]])
        # infusion rates running in [b_k, b_{k+1}): started at or before b_k, ending after it
        running = is_inf[None, :] & (start[None, :] <= b[:, None]) & (b[:, None] < end[None, :])
        seg_rates = (running.astype(dtype) * inf_rate[None, :]) @ onehot  # (n_seg, n_cmt)

        t_order = jnp.argsort(t_safe)
        ts = t_safe[t_order]
        # sorted position of each dose's start and end rows (rows before them: SS, t0)
        n_before = (n_dose if ss is not None else 0) + (1 if t0 is not None else 0)
        position = (
            jnp.zeros(order.shape[0], jnp.int32)
            .at[order]
            .set(jnp.arange(order.shape[0], dtype=jnp.int32))
        )
        aux = {
            "start_pos": position[n_before : n_before + n_dose],
            "end_pos": position[n_before + n_dose : n_before + 2 * n_dose],
            "b_next": b_next,
            "reset": reset[order],
            "finite_t": finite_t,
            "t_order": t_order,
            "ts": ts,
            # each evaluation time belongs to the last segment starting at or before it
            "seg_of_t": jnp.searchsorted(b, ts, side="right") - 1,  # -1: before the 1st dose
        }
        return (b, jump, seg_rates), aux

    def _steady_state(self, keys: tuple, pvec: Any, data: tuple, is_ss: Any, span: Any) -> Any:
        """Steady-state amounts just before each steady-state dose, shape (n_dose, n_cmt).

        For dose ``i`` (amount, rate, CMT, ``F``/``ALAG`` as given) the cycle map
        ``G(x)`` = amounts at ``t_i + II_i`` starting from ``x`` at ``t_i`` with that one
        dose at ``t_i`` (the solve of this model, with ``initial=(t_i, x)``); the steady
        state is its fixed point ``x* = G(x*)``, found by Newton's method from ``x = 0``
        with ``dG/dx`` from the forward sensitivities (exact in one step for linear
        models up to the solver error; a few steps for nonlinear ones). Derivatives follow
        the implicit function theorem: the returned value is one more Newton step taken
        with the converged iterate and Jacobian held constant, whose derivative is
        ``(I - dG/dx)^-1 dG/dp``. NaN where ``span = ALAG + duration > II`` (the cycle
        does not hold the dose's input) or the iteration did not converge.
        """
        d_time, amt, rate, cmt, _, extra, t = data
        ii = extra["ii"]
        dtype = t.dtype
        n = len(self.compartments)
        base = [i for i, k in enumerate(keys) if not k.startswith(_INIT)]
        keys_c = tuple(keys[i] for i in base) + tuple(f"{_INIT}{k}" for k in range(n))
        p_base = pvec[jnp.asarray(base, jnp.int32)] if base else pvec[:0]
        p_base_sg = jax.lax.stop_gradient(p_base)
        # other slots: a zero dose every hour (fixed point 0, found at once, no NaN)
        ii_c = jnp.where(is_ss, ii, 1.0)
        amt_c = jnp.where(is_ss, amt, 0.0)
        rtol, atol = self.rtol, self.atol
        eye = jnp.eye(n, dtype=dtype)

        def one(t_i, amt_i, rate_i, cmt_i, ii_i):
            dc = (
                t_i[None], amt_i[None], rate_i[None], cmt_i[None], jnp.ones(1, bool),
                {"t0": t_i}, (t_i + ii_i)[None],
            )  # fmt: skip

            def cycle_jac(x):
                pc = jnp.concatenate([p_base_sg, x])
                out, ok, jac = self._solve(keys_c, pc, dc, sens=True)
                return out[0], ok, jac[0][:, -n:]

            def body(state):
                x, _, _, it, _ = state
                g, ok, jac = cycle_jac(x)
                step = jnp.linalg.solve(eye - jac, g - x)
                small = jnp.all(jnp.abs(step) <= _SS_NEWTON_TOL * (atol + rtol * jnp.abs(x)))
                return x + step, jac, ok, it + 1, small | ~ok

            def cond(state):
                _, _, ok, it, done = state
                return ok & ~done & (it < _SS_MAX_NEWTON)

            x0 = jnp.zeros(n, dtype)
            init = (x0, jnp.zeros((n, n), dtype), jnp.asarray(True), jnp.asarray(0), False)
            x, jac, ok, _, done = jax.lax.while_loop(cond, body, init)
            x, jac = jax.lax.stop_gradient(x), jax.lax.stop_gradient(jac)
            # the implicit-function step: differentiable in the parameters (custom JVP)
            g, ok2 = _solve_forward(self, keys_c, jnp.concatenate([p_base, x]), dc)
            x_star = x + jnp.linalg.solve(eye - jac, g[0] - x)
            good = ok & ok2 & done
            return jnp.where(good, x_star, jnp.nan)

        x_ss = jax.vmap(one)(d_time, amt_c, rate, cmt, ii_c)
        fits = span <= ii * (1 + 1e-12)
        return jnp.where((is_ss & ~fits)[:, None], jnp.nan, x_ss)

    def _solve(self, keys: tuple, pvec: Any, data: tuple, sens: bool) -> tuple[Any, Any, Any]:
        """The event-segmented solve, by the built-in loop or by diffrax (``integrator``).

        Returns ``(amounts, ok, jac)``: amounts (n_time, n_cmt) at the evaluation times in
        their given order (NaN where not ok or the time is not finite); with ``sens``, the
        Jacobian d amounts / d pvec (n_time, n_cmt, n_p), else None.
        """
        if self._builtin:
            return self._solve_erk(keys, pvec, data, sens)
        return self._solve_diffrax(keys, pvec, data, sens)

    def _solve_erk(self, keys: tuple, pvec: Any, data: tuple, sens: bool) -> tuple[Any, Any, Any]:
        """The built-in integrator: ONE adaptive explicit Runge-Kutta loop over all events.

        A single ``lax.while_loop`` per subject carries ``(t, z = [y, vec(S)], h, ...)``;
        each iteration first applies the next event when it is due (bolus jump, new
        infusion input, sensitivity jump, step size restarted), saves ``z`` at the
        evaluation times equal to ``t`` (so a dose at an evaluation time is included), then
        takes one step of the solver's Butcher tableau clipped to the next event and the
        next evaluation time, accepted or rejected by diffrax's default I-controller
        (``PIDController(rtol, atol)``: safety 0.9, factors 0.2..10, error norm RMS of
        the amounts only). Under ``vmap`` (subjects) this is one lock-step loop of small
        array operations instead of one ``diffeqsolve`` per segment, each with its own
        nested loops (steps, dense output at the evaluation times), which is what made the
        diffrax path several times slower (see ``bench/README.md``). Termination is
        guaranteed: every iteration either applies an event or counts as a step of the
        current segment, and more than ``max_steps`` steps in a segment, a non-finite
        derivative, step size or event time ends the subject's loop with ``ok = False``.
        """
        t_obs = data[-1]
        dtype = t_obs.dtype
        n = len(self.compartments)
        n_time = t_obs.shape[0]
        n_p = pvec.shape[0] if sens else 0
        tab = type(self.solver).tableau
        n_stage = tab.num_stages
        a_rows = [np.asarray(a, float) for a in tab.a_lower]
        c_nodes = np.concatenate([[0.0], np.asarray(tab.c, float)])
        b_sol = np.asarray(tab.b_sol, float)
        b_err = np.asarray(tab.b_error, float)
        err_order = self.solver.error_order(diffrax.ODETerm(self._vector_field))
        err_exp = -1.0 / float(err_order)
        rtol, atol = self.rtol, self.atol

        (b, jump, seg_rates), aux = self._events(keys, pvec, data)
        if sens:
            (db, djump, drates), _ = jax.jacfwd(self._events, argnums=1, has_aux=True)(
                keys, pvec, data
            )
        # unsorted evaluation times (non-finite ones parked by _events) and the horizon
        ts = jnp.zeros(n_time, dtype).at[aux["t_order"]].set(aux["ts"])
        reset = aux["reset"]
        n_seg = b.shape[0]
        t_end = aux["b_next"][-1]
        eye = jnp.eye(n_p, dtype=dtype)
        events_ok = jnp.all(jnp.isfinite(b)) & jnp.all(jnp.isfinite(jump))
        events_ok = events_ok & jnp.all(jnp.isfinite(seg_rates)) & jnp.isfinite(t_end)
        # a hard cap on iterations (each segment: its events plus at most max_steps steps)
        max_iter = n_seg * (self.max_steps + 2) + 2

        n_pk = 0 if self.pk is None else len(self.pk.compartments)
        start_pos, end_pos = aux["start_pos"], aux["end_pos"]

        def f(tt, y, pv, r, kk):
            # kk: events applied so far; with pk the closed form sees the doses given by
            # then (a step ending at a dose time gets the left limit, as y does)
            pd = dict(zip(keys, pv, strict=True))
            forcing = None
            if n_pk:
                doses = self._pk_doses(data, start_pos < kk)
                ended = end_pos < kk
                forcing = self.pk._amounts(pd, doses, tt[None], infusion_ended=ended)[0]
            return self._derivative(tt, y, pd, forcing) + r

        def f_aug(tt, z, r, dr, kk):
            if not sens:
                return f(tt, z, pvec, r, kk)
            # forward sensitivities: S' = (df/dy) S + df/dp + dr/dp, flat [y, vec(S)]
            y, S = z[:n], z[n:].reshape(n, n_p)
            dy, f_lin = jax.linearize(lambda y_, p_: f(tt, y_, p_, r, kk), y, pvec)
            dS = jax.vmap(f_lin, in_axes=(1, 0), out_axes=1)(S, eye) + dr
            return jnp.concatenate([dy, dS.reshape(-1)])

        def rms(x):  # over the integrated compartments (with pk, not its dead rows)
            x = x[n_pk:]
            return jnp.sqrt(jnp.mean(x * x))

        def combine(coef, ks, m=None):
            pairs = zip(coef, ks, strict=True)
            terms = [float(c) * (k if m is None else k[:m]) for c, k in pairs if c != 0]
            return functools.reduce(jnp.add, terms)

        def cond(state):
            t, _, _, _, _, k, _, ok, _, _, it = state
            return ok & ((k < n_seg) | (t < t_end)) & (it < max_iter)

        def body(state):
            t, z, h, r, dr, k, steps, ok, fy, out, it = state
            # 1. the next event, when due: bolus jump, infusion input, sensitivity jump
            kc = jnp.minimum(k, n_seg - 1)
            due = (k < n_seg) & (b[kc] <= t)
            r = jnp.where(due, seg_rates[kc], r)
            wipe = due & reset[kc]  # SS=1: the state restarts from zero before the jump
            y_new = jnp.where(wipe, 0.0, z[:n]) + jnp.where(due, jump[kc], 0.0)
            k_new = jnp.where(due, k + 1, k)
            if sens:
                # S jumps by (f(b-) - f(b+)) db/dp + d jump/dp (event sensitivity); after a
                # reset S(b+) = d jump/dp - f(b+) db/dp
                dr = jnp.where(due, drates[kc], dr)
                f_new = f(t, y_new, pvec, r, k_new)
                s_old = jnp.where(wipe, 0.0, z[n:].reshape(n, n_p))
                f_old = jnp.where(wipe, 0.0, fy)
                dS = jnp.outer(f_old - f_new, db[kc]) + djump[kc]
                z = jnp.concatenate([y_new, (s_old + jnp.where(due, dS, 0.0)).reshape(-1)])
                fy = jnp.where(due, f_new, fy)
            else:
                z = y_new
            k = k_new
            steps = jnp.where(due, 0, steps)
            # 2. save at the evaluation times equal to t (after the event: dose included)
            out = jnp.where((ts == t)[:, None], z[None, :], out)
            # 3. one step, clipped to the next event and the next evaluation time
            k1 = f_aug(t, z, r, dr, k)
            y0 = z[:n]
            if self.dt0 is None:  # restart after an event (Hairer's first guess)
                s0 = atol + rtol * jnp.abs(y0)
                d0, d1 = rms(y0 / s0), rms(k1[:n] / s0)
                small = (d0 < 1e-5) | (d1 < 1e-5)
                h0 = jnp.where(small, 1e-6, 0.01 * d0 / jnp.where(small, 1.0, d1))
            else:
                h0 = jnp.asarray(self.dt0, dtype)
            h = jnp.where(due, h0, h)
            kc = jnp.minimum(k, n_seg - 1)
            t_stop = jnp.minimum(
                jnp.where(k < n_seg, b[kc], t_end), jnp.min(jnp.where(ts > t, ts, t_end))
            )
            want = t_stop > t  # False: another event is due at this same time
            clipped = h >= t_stop - t
            dt = jnp.where(clipped, t_stop - t, h)
            ks = [k1]
            for i in range(1, n_stage):
                zi = z + dt * combine(a_rows[i - 1], ks)
                ks.append(f_aug(t + float(c_nodes[i]) * dt, zi, r, dr, k))
            z1 = z + dt * combine(b_sol, ks)
            y1 = z1[:n]
            y_err = dt * combine(b_err, ks, n)
            scale = atol + rtol * jnp.maximum(jnp.abs(y0), jnp.abs(y1))
            err = rms(y_err / scale)
            finite = jnp.isfinite(err) & jnp.all(jnp.isfinite(z1))
            accept = want & finite & (err <= 1.0)
            factor = 0.9 * jnp.where(finite & (err > 0), err, 1.0) ** err_exp
            factor = jnp.where(finite & (err == 0), 10.0, factor)
            factor = jnp.clip(factor, jnp.where(accept, 1.0, 0.2), jnp.where(accept, 10.0, 0.9))
            factor = jnp.where(finite, factor, 0.2)
            # a step shortened to hit a time does not shrink the next one
            h_next = jnp.where(accept & clipped, jnp.maximum(dt * factor, h), dt * factor)
            t = jnp.where(accept, jnp.where(clipped, t_stop, t + dt), t)
            z = jnp.where(accept, z1, z)
            h = jnp.where(want, h_next, h)
            if sens:
                f_end = ks[-1][:n] if tab.fsal else f(t, z[:n], pvec, r, k)
                fy = jnp.where(accept, f_end, fy)
            steps = steps + want.astype(steps.dtype)
            ok = ok & (steps <= self.max_steps) & jnp.all(jnp.isfinite(k1))
            ok = ok & jnp.isfinite(h) & (h > 0)
            return t, z, h, r, dr, k, steps, ok, fy, out, it + 1

        n_z = n + n * n_p
        init = (
            b[0],
            jnp.zeros(n_z, dtype),
            jnp.asarray(1.0, dtype),
            jnp.zeros(n, dtype),
            jnp.zeros((n, n_p), dtype),
            jnp.asarray(0, jnp.int32),
            jnp.asarray(0, jnp.int32),
            events_ok,
            jnp.zeros(n, dtype),
            jnp.zeros((n_time, n_z), dtype),
            jnp.asarray(0, jnp.int32),
        )
        t, z, _, _, _, k, _, ok, _, out, _ = jax.lax.while_loop(cond, body, init)
        ok = ok & (k >= n_seg) & (t >= t_end)  # stopped by the iteration cap: failed
        out = jnp.where((ts == t)[:, None], z[None, :], out)
        ok = ok & jnp.all(jnp.isfinite(out))
        keep = (ok & aux["finite_t"])[:, None]
        amounts = jnp.where(keep, out[:, :n], jnp.nan)
        if not sens:
            return amounts, ok, None
        jac = out[:, n:].reshape(n_time, n, n_p)
        return amounts, ok, jnp.where(keep[..., None], jac, 0.0)

    def _solve_diffrax(self, keys: tuple, pvec: Any, data: tuple, sens: bool) -> tuple:
        """The segment-by-segment diffrax solve; with ``sens``, also d amounts / d pvec.

        Forward sensitivities ``S = dy/dp`` (n_cmt, n_p) are integrated with the state, as
        the augmented system ``y' = f(y, p) + r``, ``S' = (df/dy) S + df/dp`` (Jacobian-
        vector products of the user's rhs), by the same solver with the same steps (the
        error norm only looks at ``y``), which makes ``S`` the derivative of the discrete
        solution. At a segment start ``b`` (which may depend on ``ALAG``/``F``) the
        sensitivity jumps by ``(f_before - f_after) db/dp + d jump/dp``, the standard
        event-sensitivity condition. Returns ``(amounts, ok, jac)`` (``jac`` None without
        ``sens``).
        """
        t = data[-1]
        dtype = t.dtype
        n = len(self.compartments)
        n_time = t.shape[0]
        n_p = pvec.shape[0]
        p = dict(zip(keys, pvec, strict=True))

        (b, jump, seg_rates), aux = self._events(keys, pvec, data)
        ts = aux["ts"]
        if sens:
            (db, djump, drates), _ = jax.jacfwd(self._events, argnums=1, has_aux=True)(
                keys, pvec, data
            )
        else:
            db = jnp.zeros((b.shape[0], 0), dtype)
            djump = jnp.zeros((b.shape[0], n, 0), dtype)
            drates = jnp.zeros((b.shape[0], n, 0), dtype)

        def f(tt, y, pv, r):
            return self._derivative(tt, y, dict(zip(keys, pv, strict=True))) + r

        def f_aug(tt, z, args):
            # one flat state vector [y, vec(S)]: under vmap this is several times faster
            # than a (y, S) pytree
            # dr: d(input rates)/dp, non-zero for modelled infusions (RATE -1/-2)
            pv, r, dr = args
            y, S = z[:n], z[n:].reshape(n, n_p)
            dy, f_lin = jax.linearize(lambda y_, p_: f(tt, y_, p_, r), y, pv)
            dS = jax.vmap(f_lin, in_axes=(1, 0), out_axes=1)(S, jnp.eye(n_p, dtype=dtype)) + dr
            return jnp.concatenate([dy, dS.reshape(-1)])

        if sens:
            term = diffrax.ODETerm(f_aug)
            controller = diffrax.PIDController(
                rtol=self.rtol, atol=self.atol, norm=functools.partial(_head_norm, n=n)
            )
            adjoint = diffrax.ForwardMode()
        else:
            term = diffrax.ODETerm(self._vector_field)
            controller = diffrax.PIDController(rtol=self.rtol, atol=self.atol)
            adjoint = (
                diffrax.RecursiveCheckpointAdjoint()
                if self.sensitivities == "reverse"
                else diffrax.ForwardMode()
            )

        def segment(carry, xs):
            y, S, ok, f_end = carry
            b0, b1, dy, r, db_k, dj_k, dr_k, wipe = xs
            # SS=1: the state (and its sensitivities) restarts from zero before the jump
            y = jnp.where(wipe, 0.0, y) + dy
            if sens:
                S, f_end = jnp.where(wipe, 0.0, S), jnp.where(wipe, 0.0, f_end)
                S = S + jnp.outer(f_end - f(b0, y, pvec, r), db_k) + dj_k
                y0, args = jnp.concatenate([y, S.reshape(-1)]), (pvec, r, dr_k)
            else:
                y0, args = y, (p, r)
            # clip with `where` (not jnp.clip): in-segment times keep no dependence on b0/b1
            ts_k = jnp.where(ts < b0, b0, jnp.where(ts > b1, b1, ts))
            sol = diffrax.diffeqsolve(
                term,
                self.solver,
                t0=b0,
                t1=b1,
                dt0=self.dt0,
                y0=y0,
                args=args,
                saveat=diffrax.SaveAt(ts=ts_k, t1=True),
                stepsize_controller=controller,
                max_steps=self.max_steps,
                adjoint=adjoint,
                throw=False,
            )
            if sens:
                ys, Ss = sol.ys[:, :n], sol.ys[:, n:].reshape(-1, n, n_p)
                S1 = Ss[-1]
            else:
                ys, Ss, S1 = sol.ys, None, S
            y1 = ys[-1]
            ok = ok & (sol.result == diffrax.RESULTS.successful) & jnp.all(jnp.isfinite(y1))
            # after a failure, carry zeros: later segments stay cheap and finite
            y1 = jnp.where(ok, y1, 0.0)
            if sens:
                S1 = jnp.where(ok, S1, 0.0)
                f_end = f(b1, y1, pvec, r)
            return (y1, S1, ok, f_end), (ys[:-1], None if Ss is None else Ss[:-1])

        zeros = jnp.zeros(n, dtype)
        events_ok = jnp.all(jnp.isfinite(b)) & jnp.all(jnp.isfinite(jump))
        events_ok = events_ok & jnp.all(jnp.isfinite(seg_rates))
        init = (zeros, jnp.zeros((n, n_p if sens else 0), dtype), events_ok, zeros)
        # a failed event (e.g. a steady state not found) gives NaN jumps: keep them out
        jump = jnp.where(events_ok, jump, 0.0)
        xs = (b, aux["b_next"], jump, seg_rates, db, djump, drates, aux["reset"])
        (_, _, ok, _), (ys_all, Ss_all) = jax.lax.scan(segment, init, xs)
        # ys_all: (n_seg, n_time, n_cmt) at the sorted times; pick each time's segment
        seg = aux["seg_of_t"]
        before = (seg < 0)[:, None]
        cols = jnp.arange(n_time)
        picked = jnp.where(before, 0.0, ys_all[jnp.maximum(seg, 0), cols])
        out = jnp.zeros((n_time, n), dtype).at[aux["t_order"]].set(picked)
        ok = ok & jnp.all(jnp.isfinite(out))
        keep = (ok & aux["finite_t"])[:, None]
        out = jnp.where(keep, out, jnp.nan)
        if not sens:
            return out, ok, None
        jac = jnp.where(before[..., None], 0.0, Ss_all[jnp.maximum(seg, 0), cols])
        jac = jnp.zeros((n_time, n, n_p), dtype).at[aux["t_order"]].set(jac)
        return out, ok, jnp.where(keep[..., None], jac, 0.0)

    def amounts(
        self, params: Mapping[str, Any], doses: Any, times: Any, initial: Any = None
    ) -> Any:
        """Amount in every compartment at ``times`` for one subject (NaN if the solve failed).

        Parameters
        ----------
        params : mapping of str to scalar
            The names in ``required``, plus optional ``F<n>`` (default 1) and ``ALAG<n>``
            (default 0) for the 1-based CMT ``n``, and ``R<n>`` / ``D<n>`` (needed by doses
            with ``rate`` -1 / -2); every entry is also visible to ``rhs``.
        doses : Doses
            One subject's dose events (fields of shape (n_dose,)); ``cmt`` 0 means
            ``default_dose_cmt``; ``rate > 0`` is a zero-order infusion, ``rate`` -1 / -2
            one with the modelled rate ``R<n>`` / duration ``D<n>``, ``0`` a bolus;
            events with ``mask`` False change nothing.
        times : array, shape (n_time,)
            Evaluation times, any order.
        initial : tuple ``(t0, a0)``, optional
            Amounts ``a0`` (shape (n_cmt,)) added to the state at time ``t0`` as one extra
            event (no ``F<n>``/``ALAG<n>``; the state is zero before the first event).
            ``a0`` enters the parameter vector, so derivatives with respect to it are
            available with both ``sensitivities``. Used to carry the amounts across the
            change times of time-varying covariates.

        Returns
        -------
        array, shape (n_time, n_cmt)
            Amounts; column ``k`` is ``compartments[k]``. All NaN when the solver failed
            (use :meth:`solve_status` for an explicit flag).

        Raises
        ------
        ModelError (a ValueError)
            A required parameter is missing; ``rhs`` returns the wrong compartments or shape;
            or, when the dose arrays are concrete, a real dose has a CMT outside
            ``0..n_cmt``, a negative RATE other than -1/-2, RATE -1/-2 without its
            ``R<n>``/``D<n>``, an SS code other than 0/1/2, SS > 0 without II > 0, or a
            steady-state dose whose ``ALAG`` + infusion duration exceeds ``II``.
        NotImplementedError
            A derivative w.r.t. the dose records or times with ``sensitivities="forward"``.
        """
        return self.solve_status(params, doses, times, initial)[0]

    # ------------------------------------------------------------------ failures
    def failure_message(self, n_failed: int | None = None, n_total: int | None = None) -> str:
        """Explain an ODE solver failure and the remedies to try, in order.

        Parameters
        ----------
        n_failed, n_total : int, optional
            How many solves failed, out of how many (e.g. subjects or draws).
        """
        solver = type(self.solver).__name__
        count = ""
        if n_failed is not None:
            count = f" for {n_failed}" + (f" of {n_total}" if n_total is not None else "")
        stiff = isinstance(self.solver, diffrax.AbstractImplicitSolver)
        tips = [
            f"increase max_steps (now {self.max_steps}; the limit is per segment between "
            "dose events), e.g. ODE(..., max_steps=100_000);",
            (
                "the system may be stiff (rate constants of very different magnitudes, or "
                "extreme parameter values): use an implicit solver, "
                "ODE(..., solver=diffrax.Kvaerno5());"
                if not stiff
                else f"the implicit solver {solver} already handles stiffness; check that the "
                "rates are plausible;"
            ),
            f"loosen the tolerances (now rtol={self.rtol:g}, atol={self.atol:g}), e.g. "
            "rtol=1e-6, atol=1e-8 (and scale atol with the dose unit);",
            "check the rhs for NaN/inf (division by a vanishing amount or volume, log or "
            "power of a negative amount) and the priors/initial values for absurd rate "
            "constants.",
        ]
        lines = "\n".join(f"  {i}. {tip}" for i, tip in enumerate(tips, 1))
        return (
            f"The ODE solve ({solver}, rtol={self.rtol:g}, atol={self.atol:g}, "
            f"max_steps={self.max_steps}) failed{count}: it reached the maximum number of "
            f"steps, its step size collapsed, or the amounts became non-finite. Try:\n{lines}"
        )

    def raise_if_failed(self, ok: Any) -> None:
        """Raise :class:`ODESolveError` (with :meth:`failure_message`) unless all ``ok``.

        Eager only (outside ``jit``): ``ok`` is the flag, or array of flags, returned by
        :meth:`solve_status`.
        """
        ok = np.asarray(ok, bool)
        if not ok.all():
            raise ODESolveError(self.failure_message(int((~ok).sum()), int(ok.size)))
