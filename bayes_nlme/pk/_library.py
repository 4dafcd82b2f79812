r"""Mechanistic model library: ready-made :class:`~bayes_nlme.pk.ODE` structural models.

Every factory returns a configured ``bn.pk.ODE`` (compartments in NONMEM CMT order, the
required individual parameters checked by the engine); keyword arguments ``**ode_options``
(``rtol``, ``atol``, ``solver``, ``max_steps``, ...) are passed on to :class:`ODE`.

The ODE engine starts every state at zero at the first dose. Models with an endogenous
baseline (a response ``R0``, a target ``R0``, a cell count ``Circ0``) are therefore written
for the deviation from baseline, zero at rest; each docstring says how to get the absolute
value back in ``derived`` (e.g. ``R = R0 + a.Response``).

Units: amounts in the dose unit, concentrations ``Central / V``. Targets (TMDD) need molar
units for the drug too (dose in nmol, ``V`` in L: concentrations in nM).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from .._errors import ModelError
from ._ode import ODE

__all__ = [
    "antibody_decay_to_plateau",
    "effect_compartment",
    "friberg",
    "indirect_response",
    "michaelis_menten",
    "sigmoid_emax",
    "tmdd_full",
    "tmdd_full_concentrations",
    "tmdd_qss",
    "tmdd_qss_concentrations",
    "transit_absorption",
]


def _name(rhs, name: str):
    rhs.__name__ = rhs.__qualname__ = name
    return rhs


# --------------------------------------------------------------------------------------------
# PK
# --------------------------------------------------------------------------------------------


def michaelis_menten(absorption: str = "oral", **ode_options: Any) -> ODE:
    r"""One compartment with Michaelis-Menten (saturable) elimination (NONMEM ADVAN10-like).

    Equations (``C = Central / V``)::

        oral:  dDepot/dt   = -KA Depot
               dCentral/dt =  KA Depot - VM C / (KM + C)
        iv:    dCentral/dt = -VM C / (KM + C)

    Parameters
    ----------
    absorption : {"oral", "iv"}, default "oral"
        ``"oral"``: first-order absorption from a depot (doses into CMT 1, the depot);
        ``"iv"``: doses (bolus or infusion) straight into the central compartment.
    **ode_options
        Passed to :class:`~bayes_nlme.pk.ODE` (``rtol``, ``atol``, ``solver``, ...).

    Returns
    -------
    ODE
        Compartments (CMT order): oral ``Depot, Central``; iv ``Central``.
        Required parameters: ``KA`` (1/time, oral only), ``V`` (volume), ``VM`` (maximal
        elimination rate, amount/time) and ``KM`` (concentration at half-maximal rate,
        amount/volume).

    Notes
    -----
    At concentrations far below ``KM`` the elimination is linear with clearance
    ``CL = VM / KM``; far above, it is zero-order at rate ``VM``. The NONMEM ADVAN10
    parametrisation is the same (``VM`` as an amount per time, ``KM`` as a concentration).
    Source: Michaelis & Menten (1913), Biochem Z 49:333-369; in population PK e.g.
    Ludden, Beal & Sheiner (1991), J Pharmacokinet Biopharm 19:3-35 (phenytoin).

    Examples
    --------
    >>> import bayes_nlme as bn
    >>> mm = bn.pk.michaelis_menten("oral")
    >>> mm.compartments, mm.required
    (('Depot', 'Central'), ('KA', 'V', 'VM', 'KM'))
    >>> # in a Model: derived=lambda p, a, ind: dict(DV=bn.error.Proportional(
    >>> #     a.Central / ind.V, sd=p.prop_sd))
    """

    def elimination(a, p):
        c = a.Central / p.V
        return p.VM * c / (p.KM + c)

    if absorption == "oral":

        def rhs(t, a, p):
            return {
                "Depot": -p.KA * a.Depot,
                "Central": p.KA * a.Depot - elimination(a, p),
            }

        comps, req = ("Depot", "Central"), ("KA", "V", "VM", "KM")
    elif absorption == "iv":

        def rhs(t, a, p):
            return {"Central": -elimination(a, p)}

        comps, req = ("Central",), ("V", "VM", "KM")
    else:
        raise ModelError(f"absorption must be 'oral' or 'iv'; got {absorption!r}.")
    return ODE(_name(rhs, f"michaelis_menten_{absorption}"), comps, req, **ode_options)


def transit_absorption(n_transit: int, **ode_options: Any) -> ODE:
    r"""Transit-compartment absorption (Savic et al. 2007) into one compartment, linear elimination.

    An explicit chain of ``n = n_transit`` transit compartments with the rate constant
    ``KTR`` ahead of the absorption depot; the dose goes into CMT 1 (``Transit1``, or the
    ``Depot`` when ``n_transit = 0``)::

        dTransit1/dt = -KTR Transit1
        dTransit{i}/dt = KTR Transit{i-1} - KTR Transit{i}          (i = 2..n)
        dDepot/dt    = KTR Transit{n} - KA Depot
        dCentral/dt  = KA Depot - CL / V Central

    Parameters
    ----------
    n_transit : int >= 0
        Number of transit compartments (fixed integer: the explicit chain, not Savic's
        gamma-function approximation for a continuous ``n``). ``0`` gives the ordinary
        one-compartment model with first-order absorption (:class:`Depots1Central1`).
    **ode_options
        Passed to :class:`~bayes_nlme.pk.ODE`.

    Returns
    -------
    ODE
        Compartments (CMT order): ``Transit1, ..., Transit{n}, Depot, Central``.
        Required parameters: ``KTR`` (transit rate constant, 1/time; only used when
        ``n_transit >= 1`` but always required), ``KA`` (absorption rate constant, 1/time),
        ``CL`` (clearance, volume/time), ``V`` (volume).

    Notes
    -----
    Savic, Jonker, Kerbusch & Karlsson (2007), J Pharmacokinet Pharmacodyn 34:711-726:
    the dose sits in compartment 0 and passes through ``n_Savic`` transit compartments,
    ``A_n(t) = Dose (KTR t)^n exp(-KTR t) / n!``, then into the absorption compartment at
    ``KTR``, with mean transit time ``MTT = (n_Savic + 1) / KTR``. Here ``Transit1`` is
    Savic's compartment 0, so ``n_Savic = n_transit - 1`` and ``MTT = n_transit / KTR``;
    the amount in ``Transit{n}`` is ``Dose (KTR t)^(n-1) exp(-KTR t) / (n-1)!`` after a
    single dose. To parametrise by the mean transit time, set ``KTR = n_transit / MTT``
    in ``pre``. Doses go into CMT 1; use ``F1`` for bioavailability.

    Examples
    --------
    >>> import bayes_nlme as bn
    >>> m = bn.pk.transit_absorption(3)
    >>> m.compartments
    ('Transit1', 'Transit2', 'Transit3', 'Depot', 'Central')
    >>> m.required
    ('KTR', 'KA', 'CL', 'V')
    """
    if isinstance(n_transit, bool) or not isinstance(n_transit, int) or n_transit < 0:
        raise ModelError(f"n_transit must be an int >= 0; got {n_transit!r}.")
    names = tuple(f"Transit{i}" for i in range(1, n_transit + 1))

    def rhs(t, a, p):
        out = {}
        inflow = 0.0
        for name in names:
            out[name] = inflow - p.KTR * a[name]
            inflow = p.KTR * a[name]
        out["Depot"] = inflow - p.KA * a.Depot
        out["Central"] = p.KA * a.Depot - p.CL / p.V * a.Central
        return out

    return ODE(
        _name(rhs, f"transit_absorption_{n_transit}"),
        (*names, "Depot", "Central"),
        ("KTR", "KA", "CL", "V"),
        **ode_options,
    )


# --------------------------------------------------------------------------------------------
# TMDD
# --------------------------------------------------------------------------------------------


def tmdd_full(**ode_options: Any) -> ODE:
    r"""Target-mediated drug disposition, full binding model (Mager & Jusko 2001), 1 compartment.

    Concentrations ``C = Central / V`` (free drug), ``R`` (free target), ``RC`` (complex);
    ``R(0) = R0``, ``KSYN = R0 KDEG``::

        dC/dt  = -CL/V C - KON C R + KOFF RC        (+ doses / V)
        dR/dt  =  KSYN - KDEG R - KON C R + KOFF RC
        dRC/dt =  KON C R - KOFF RC - KINT RC

    Solved for the states ``Central`` (free drug AMOUNT, doses go here), ``Target = R - R0``
    (deviation of the free target concentration from its baseline, zero at rest) and
    ``Complex = RC`` (concentration; zero at baseline)::

        dCentral/dt = -CL/V Central - V (KON C R - KOFF RC)
        dTarget/dt  = -KDEG Target - KON C R + KOFF RC        with R = R0 + Target
        dComplex/dt =  KON C R - (KOFF + KINT) RC

    Parameters
    ----------
    **ode_options
        Passed to :class:`~bayes_nlme.pk.ODE`. Binding is often fast (``KON R0``,
        ``KOFF`` >> ``CL/V``): the system is then stiff; use
        ``solver=diffrax.Kvaerno5(), rtol=1e-6, atol=1e-8`` (tighter tolerances made
        Kvaerno5 fail on a fast-binding example) or the :func:`tmdd_qss` approximation.

    Returns
    -------
    ODE
        Compartments (CMT order): ``Central, Target, Complex``.
        Required parameters: ``CL`` (linear clearance, volume/time), ``V`` (volume),
        ``KON`` (1/(concentration time), e.g. 1/(nM h)), ``KOFF`` (1/time), ``KINT``
        (internalisation of the complex, 1/time), ``KDEG`` (target degradation, 1/time),
        ``R0`` (baseline free target, concentration). ``KSYN = R0 KDEG`` is implied by the
        baseline (steady state without drug).

    Notes
    -----
    Molar units: dose in nmol, ``V`` in L gives nM. Absolute values in ``derived``
    (see :func:`tmdd_full_concentrations`): free drug ``C = a.Central / V``, free target
    ``R = R0 + a.Target``, complex ``RC = a.Complex``; total drug ``C + RC``, total target
    ``R + RC``.

    Source: Mager & Jusko (2001), J Pharmacokinet Pharmacodyn 28:507-532 (here with the
    central compartment only; add a peripheral compartment with a custom ``ODE``).

    Examples
    --------
    >>> import diffrax
    >>> import bayes_nlme as bn
    >>> tmdd = bn.pk.tmdd_full(solver=diffrax.Kvaerno5(), rtol=1e-6, atol=1e-8)
    >>> tmdd.compartments, tmdd.required
    (('Central', 'Target', 'Complex'), ('CL', 'V', 'KON', 'KOFF', 'KINT', 'KDEG', 'R0'))
    >>> def derived(p, a, ind):
    ...     conc = bn.pk.tmdd_full_concentrations(a.Central, a.Target, a.Complex, ind.V, ind.R0)
    ...     return dict(DV=bn.error.Proportional(conc["total_drug"], sd=p.prop_sd))
    """

    def rhs(t, a, p):
        c = a.Central / p.V
        r = p.R0 + a.Target
        rc = a.Complex
        binding = p.KON * c * r - p.KOFF * rc
        return {
            "Central": -p.CL / p.V * a.Central - p.V * binding,
            "Target": -p.KDEG * a.Target - binding,
            "Complex": binding - p.KINT * rc,
        }

    return ODE(
        _name(rhs, "tmdd_full"),
        ("Central", "Target", "Complex"),
        ("CL", "V", "KON", "KOFF", "KINT", "KDEG", "R0"),
        **ode_options,
    )


def tmdd_full_concentrations(central, target, complex_, V, R0) -> dict[str, Any]:
    """Concentrations of the :func:`tmdd_full` model from its states.

    Parameters
    ----------
    central, target, complex_ : array
        ``a.Central`` (free drug amount), ``a.Target`` (free target minus ``R0``),
        ``a.Complex`` (complex concentration).
    V, R0 : array
        Volume and baseline free target.

    Returns
    -------
    dict
        ``free_drug`` (``Central / V``), ``free_target`` (``R0 + Target``), ``complex``,
        ``total_drug`` (free drug + complex) and ``total_target`` (free target + complex).
    """
    c = central / V
    r = R0 + target
    return dict(
        free_drug=c,
        free_target=r,
        complex=complex_,
        total_drug=c + complex_,
        total_target=r + complex_,
    )


def _qss_free_drug(ctot, rtot, kss):
    """Free drug of the QSS model, ``0.5 (b + sqrt(b^2 + 4 KSS Ctot))``, ``b = Ctot - Rtot -
    KSS``, in a form without cancellation for either sign of ``b``."""
    b = ctot - rtot - kss
    root = jnp.sqrt(b * b + 4.0 * kss * ctot)
    pos = b > 0
    den = jnp.where(pos, 1.0, root - b)  # root - b > 0 when b <= 0 (and rtot + kss > 0)
    return jnp.where(pos, 0.5 * (b + root), 2.0 * kss * ctot / den)


def tmdd_qss(**ode_options: Any) -> ODE:
    r"""Target-mediated drug disposition, quasi-steady-state approximation (Gibiansky et al. 2008).

    Binding is at quasi-equilibrium, ``C R = KSS RC`` with ``KSS = (KOFF + KINT) / KON``.
    States: total drug ``Ctot = C + RC`` and total target ``Rtot = R + RC``; free drug
    ``C = 0.5 [(Ctot - Rtot - KSS) + sqrt((Ctot - Rtot - KSS)^2 + 4 KSS Ctot)]``::

        dCtot/dt = -CL/V C - KINT (Ctot - C)                  (+ doses / V)
        dRtot/dt =  KSYN - KDEG Rtot - (KINT - KDEG)(Ctot - C),   KSYN = R0 KDEG

    Solved for ``Central = V Ctot`` (total drug AMOUNT in the central volume; doses go
    here) and ``Target = Rtot - R0`` (deviation of the total target from its baseline, zero
    at rest)::

        dCentral/dt = -CL C - V KINT (Ctot - C)
        dTarget/dt  = -KDEG Target - (KINT - KDEG)(Ctot - C)

    Parameters
    ----------
    **ode_options
        Passed to :class:`~bayes_nlme.pk.ODE`.

    Returns
    -------
    ODE
        Compartments (CMT order): ``Central, Target``.
        Required parameters: ``CL`` (linear clearance of free drug, volume/time), ``V``
        (volume), ``KSS`` (quasi-steady-state constant, concentration), ``KINT``
        (internalisation of the complex, 1/time), ``KDEG`` (target degradation, 1/time),
        ``R0`` (baseline target, concentration).

    Notes
    -----
    Molar units (dose in nmol, ``V`` in L: nM). In ``derived``,
    :func:`tmdd_qss_concentrations` gives free drug, total drug (``a.Central / V``),
    complex, free and total (``R0 + a.Target``) target. With ``KSS`` replaced by
    ``KD = KOFF / KON`` this is the quasi-equilibrium (rapid binding) approximation.

    Source: Gibiansky, Gibiansky, Kakkar & Ma (2008), J Pharmacokinet Pharmacodyn
    35:573-591 (here with the central compartment only).

    Examples
    --------
    >>> import bayes_nlme as bn
    >>> qss = bn.pk.tmdd_qss()
    >>> qss.compartments, qss.required
    (('Central', 'Target'), ('CL', 'V', 'KSS', 'KINT', 'KDEG', 'R0'))
    >>> def derived(p, a, ind):
    ...     conc = bn.pk.tmdd_qss_concentrations(a.Central, a.Target, ind.V, ind.R0, ind.KSS)
    ...     return dict(DV=bn.error.Proportional(conc["free_drug"], sd=p.prop_sd))
    """

    def rhs(t, a, p):
        ctot = a.Central / p.V
        rtot = p.R0 + a.Target
        c = _qss_free_drug(ctot, rtot, p.KSS)
        rc = ctot - c
        return {
            "Central": -p.CL * c - p.V * p.KINT * rc,
            "Target": -p.KDEG * a.Target - (p.KINT - p.KDEG) * rc,
        }

    return ODE(
        _name(rhs, "tmdd_qss"),
        ("Central", "Target"),
        ("CL", "V", "KSS", "KINT", "KDEG", "R0"),
        **ode_options,
    )


def tmdd_qss_concentrations(central, target, V, R0, KSS) -> dict[str, Any]:
    """Concentrations of the :func:`tmdd_qss` model from its states.

    Parameters
    ----------
    central, target : array
        ``a.Central`` (total drug amount) and ``a.Target`` (total target minus ``R0``).
    V, R0, KSS : array

    Returns
    -------
    dict
        ``free_drug``, ``free_target``, ``complex``, ``total_drug`` (``Central / V``) and
        ``total_target`` (``R0 + Target``).
    """
    ctot = central / V
    rtot = R0 + target
    c = _qss_free_drug(ctot, rtot, KSS)
    rc = ctot - c
    return dict(
        free_drug=c,
        free_target=rtot - rc,
        complex=rc,
        total_drug=ctot,
        total_target=rtot,
    )


# --------------------------------------------------------------------------------------------
# PD
# --------------------------------------------------------------------------------------------


def _oral_pk(a, p):
    return {
        "Depot": -p.KA * a.Depot,
        "Central": p.KA * a.Depot - p.CL / p.V * a.Central,
    }


def indirect_response(kind: int, hill: bool = False, **ode_options: Any) -> ODE:
    r"""Indirect (turnover) response models I-IV (Dayneka, Garg & Jusko 1993), 1-cpt oral PK.

    PK: ``dDepot/dt = -KA Depot``, ``dCentral/dt = KA Depot - CL/V Central``,
    ``C = Central / V``. Response ``dR/dt = KIN (...) - KOUT (...) R`` with
    ``R(0) = R0`` and ``KIN = R0 KOUT``:

    ========  ========================================  ==============================
    kind      equation                                  drug function
    ========  ========================================  ==============================
    1 (I)     ``KIN (1 - I(C)) - KOUT R``               ``I = IMAX C / (IC50 + C)``
    2 (II)    ``KIN - KOUT (1 - I(C)) R``               (inhibition of KOUT)
    3 (III)   ``KIN (1 + S(C)) - KOUT R``               ``S = EMAX C / (EC50 + C)``
    4 (IV)    ``KIN - KOUT (1 + S(C)) R``               (stimulation of KOUT)
    ========  ========================================  ==============================

    With ``hill=True``, ``C / (IC50 + C)`` becomes ``C^HILL / (IC50^HILL + C^HILL)``.
    The response is solved as the deviation ``Response = R - R0`` (zero at baseline)::

        I:   dResponse/dt = -KIN I(C) - KOUT Response
        II:  dResponse/dt = -KOUT Response + KOUT I(C) (R0 + Response)
        III: dResponse/dt =  KIN S(C) - KOUT Response
        IV:  dResponse/dt = -KOUT Response - KOUT S(C) (R0 + Response)

    Parameters
    ----------
    kind : {1, 2, 3, 4}
    hill : bool, default False
        Add a Hill coefficient ``HILL`` (required parameter) to the drug function.
    **ode_options
        Passed to :class:`~bayes_nlme.pk.ODE`.

    Returns
    -------
    ODE
        Compartments (CMT order): ``Depot, Central, Response``.
        Required parameters: ``KA`` (1/time), ``CL`` (volume/time), ``V`` (volume), ``R0``
        (baseline response, response units), ``KOUT`` (1/time) and ``IMAX`` (fraction,
        <= 1 for kind 2), ``IC50`` (concentration) for kinds 1-2 or ``EMAX``
        (dimensionless), ``EC50`` (concentration) for kinds 3-4; ``HILL`` with ``hill``.

    Notes
    -----
    The absolute response in ``derived`` is ``ind.R0 + a.Response``. Doses go into the
    depot (CMT 1); an IV dose into ``Central`` (CMT 2) also works.

    Source: Dayneka, Garg & Jusko (1993), J Pharmacokinet Biopharm 21:457-478.

    Examples
    --------
    >>> import bayes_nlme as bn
    >>> idr = bn.pk.indirect_response(1)
    >>> idr.compartments, idr.required
    (('Depot', 'Central', 'Response'), ('KA', 'CL', 'V', 'R0', 'KOUT', 'IMAX', 'IC50'))
    >>> def derived(p, a, ind):
    ...     return dict(
    ...         cp=bn.error.Proportional(a.Central / ind.V, sd=p.cp_sd),
    ...         resp=bn.error.Additive(ind.R0 + a.Response, sd=p.resp_sd),
    ...     )
    """
    if kind not in (1, 2, 3, 4) or isinstance(kind, bool):
        raise ModelError(f"kind must be 1, 2, 3 or 4 (Dayneka et al. I-IV); got {kind!r}.")
    inhibit = kind in (1, 2)
    top, mid = ("IMAX", "IC50") if inhibit else ("EMAX", "EC50")

    def drug(c, p):
        if hill:
            ch = c**p.HILL
            return p[top] * ch / (p[mid] ** p.HILL + ch)
        return p[top] * c / (p[mid] + c)

    def rhs(t, a, p):
        out = _oral_pk(a, p)
        c = a.Central / p.V
        d = drug(c, p)
        e = a.Response
        if kind == 1:
            de = -p.R0 * p.KOUT * d - p.KOUT * e
        elif kind == 2:
            de = -p.KOUT * e + p.KOUT * d * (p.R0 + e)
        elif kind == 3:
            de = p.R0 * p.KOUT * d - p.KOUT * e
        else:
            de = -p.KOUT * e - p.KOUT * d * (p.R0 + e)
        out["Response"] = de
        return out

    req = ("KA", "CL", "V", "R0", "KOUT", top, mid) + (("HILL",) if hill else ())
    return ODE(
        _name(rhs, f"indirect_response_{kind}"),
        ("Depot", "Central", "Response"),
        req,
        **ode_options,
    )


def sigmoid_emax(ce, e0, emax, ec50, hill=1.0):
    r"""Sigmoid Emax (Hill) model: ``E = E0 + EMAX Ce^hill / (EC50^hill + Ce^hill)``.

    A plain function of arrays for ``derived`` (e.g. with :func:`effect_compartment`).

    Parameters
    ----------
    ce : array
        Concentration (at the effect site).
    e0, emax, ec50 : array
        Baseline effect, maximal effect (added to ``e0``; negative for a decrease) and the
        concentration at half-maximal effect.
    hill : array, default 1.0
        Hill coefficient (steepness); ``1`` gives the hyperbolic Emax model.

    Returns
    -------
    array

    Notes
    -----
    Hill (1910), J Physiol 40:iv-vii; Holford & Sheiner (1981), Clin Pharmacokinet
    6:429-453.

    Examples
    --------
    >>> import bayes_nlme as bn
    >>> float(bn.pk.sigmoid_emax(2.0, e0=10.0, emax=50.0, ec50=2.0, hill=3.0))
    35.0
    """
    ce = jnp.asarray(ce)
    ch = ce**hill
    return e0 + emax * ch / (ec50**hill + ch)


def effect_compartment(**ode_options: Any) -> ODE:
    r"""One-compartment oral PK with an effect compartment (link model, Sheiner et al. 1979).

    Equations (``C = Central / V``)::

        dDepot/dt   = -KA Depot
        dCentral/dt =  KA Depot - CL / V Central
        dEffect/dt  =  KE0 (C - Effect)

    ``Effect`` is the effect-site CONCENTRATION ``Ce`` (same units as ``C``; no mass goes
    there, so the PK is unaffected). Use it in ``derived`` with :func:`sigmoid_emax`.

    Parameters
    ----------
    **ode_options
        Passed to :class:`~bayes_nlme.pk.ODE`.

    Returns
    -------
    ODE
        Compartments (CMT order): ``Depot, Central, Effect``.
        Required parameters: ``KA`` (1/time), ``CL`` (volume/time), ``V`` (volume),
        ``KE0`` (equilibration rate constant of the effect site, 1/time).

    Notes
    -----
    Source: Sheiner, Stanski, Vozeh, Miller & Ham (1979), Clin Pharmacol Ther 25:358-371.

    Examples
    --------
    >>> import bayes_nlme as bn
    >>> ec = bn.pk.effect_compartment()
    >>> ec.compartments, ec.required
    (('Depot', 'Central', 'Effect'), ('KA', 'CL', 'V', 'KE0'))
    >>> def derived(p, a, ind):
    ...     effect = bn.pk.sigmoid_emax(a.Effect, ind.E0, ind.EMAX, ind.EC50, ind.HILL)
    ...     return dict(DV=bn.error.Additive(effect, sd=p.add_sd))
    """

    def rhs(t, a, p):
        out = _oral_pk(a, p)
        out["Effect"] = p.KE0 * (a.Central / p.V - a.Effect)
        return out

    return ODE(
        _name(rhs, "effect_compartment"),
        ("Depot", "Central", "Effect"),
        ("KA", "CL", "V", "KE0"),
        **ode_options,
    )


def friberg(**ode_options: Any) -> ODE:
    r"""Semi-mechanistic myelosuppression model (Friberg et al. 2002) driven by 1-cpt IV PK.

    Absolute model (``KTR = 4 / MTT``, ``C = Central / V``, ``Edrug = SLOPE C``, all cell
    compartments at ``CIRC0`` at baseline)::

        dCentral/dt = -CL / V Central
        dProl/dt    =  KTR Prol (1 - Edrug) (CIRC0 / Circ)^GAMMA - KTR Prol
        dTransit{i}/dt = KTR (previous) - KTR Transit{i}              (i = 1, 2, 3)
        dCirc/dt    =  KTR Transit3 - KTR Circ

    The cell states are solved RELATIVE to the baseline, ``x = X / CIRC0 - 1`` (zero at
    baseline, ``-1`` at no cells), which removes ``CIRC0`` from the ODE: with
    ``Prol = CIRC0 (1 + x_Prol)`` and so on, ::

        dProl/dt    =  KTR (1 + Prol) [(1 - Edrug) (1 + Circ)^(-GAMMA) - 1]
        dTransit1/dt = KTR (Prol - Transit1), ..., dCirc/dt = KTR (Transit3 - Circ)

    (the transfers are linear, so the shift by 1 cancels there). The feedback
    ``(CIRC0 / Circ)^GAMMA = (1 + x_Circ)^(-GAMMA)`` is non-linear, but the shift is exact:
    the relative states follow the original model, not a linearisation.

    Parameters
    ----------
    **ode_options
        Passed to :class:`~bayes_nlme.pk.ODE`.

    Returns
    -------
    ODE
        Compartments (CMT order): ``Central, Prol, Transit1, Transit2, Transit3, Circ``
        (doses into ``Central``, CMT 1; bolus or infusion).
        Required parameters: ``CL`` (volume/time), ``V`` (volume), ``MTT`` (mean transit
        time through the maturation chain, time), ``GAMMA`` (feedback exponent,
        dimensionless), ``SLOPE`` (linear drug effect, 1/concentration).

    Notes
    -----
    In ``derived``, the absolute circulating count is ``CIRC0 * (1 + a.Circ)`` (``CIRC0``
    is an individual parameter of the population model, e.g. ``ind.CIRC0``, not needed
    by the ODE). ``Edrug`` is not capped: ``SLOPE C > 1`` stops proliferation and makes it
    negative, as in the original linear model; use a custom ``ODE`` with an Emax drug
    effect for very high concentrations.

    Source: Friberg, Henningsson, Maas, Nguyen & Karlsson (2002), J Clin Oncol
    20:4713-4721.

    Examples
    --------
    >>> import bayes_nlme as bn
    >>> fb = bn.pk.friberg()
    >>> fb.compartments
    ('Central', 'Prol', 'Transit1', 'Transit2', 'Transit3', 'Circ')
    >>> fb.required
    ('CL', 'V', 'MTT', 'GAMMA', 'SLOPE')
    >>> def derived(p, a, ind):
    ...     anc = ind.CIRC0 * (1.0 + a.Circ)
    ...     return dict(DV=bn.error.Proportional(anc, sd=p.prop_sd))
    """

    def rhs(t, a, p):
        ktr = 4.0 / p.MTT
        edrug = p.SLOPE * a.Central / p.V
        feedback = (1.0 + a.Circ) ** (-p.GAMMA)
        return {
            "Central": -p.CL / p.V * a.Central,
            "Prol": ktr * (1.0 + a.Prol) * ((1.0 - edrug) * feedback - 1.0),
            "Transit1": ktr * (a.Prol - a.Transit1),
            "Transit2": ktr * (a.Transit1 - a.Transit2),
            "Transit3": ktr * (a.Transit2 - a.Transit3),
            "Circ": ktr * (a.Transit3 - a.Circ),
        }

    return ODE(
        _name(rhs, "friberg"),
        ("Central", "Prol", "Transit1", "Transit2", "Transit3", "Circ"),
        ("CL", "V", "MTT", "GAMMA", "SLOPE"),
        **ode_options,
    )


def antibody_decay_to_plateau(**ode_options: Any) -> ODE:
    r"""Antibody titre after a dose (e.g. vaccination): peak, then exponential decay to a plateau.

    Closed form after a single dose of ``AMT`` at ``t_d`` (``AMT = 1`` for one vaccination)::

        A(t) = AMT [PLATEAU + (PEAK - PLATEAU) exp(-K (t - t_d))]

    written as a linear ODE with the dose as input. Two states per unit dose: the
    ``Transient`` pool (CMT 1, the dose goes here) decays at ``K`` and a fraction
    ``PLATEAU / PEAK`` of what leaves it builds the ``Persistent`` pool::

        dTransient/dt  = -K Transient
        dPersistent/dt =  K (PLATEAU / PEAK) Transient

    and the titre is ``A = PEAK (Transient + Persistent)``: right after the dose
    ``PEAK AMT``, tending to ``PLATEAU AMT``. Repeated doses add up (superposition: each
    dose adds its own peak and plateau; no saturation of boosting).

    Parameters
    ----------
    **ode_options
        Passed to :class:`~bayes_nlme.pk.ODE`.

    Returns
    -------
    ODE
        Compartments (CMT order): ``Transient, Persistent`` (dose units).
        Required parameters: ``PEAK`` (titre per unit dose right after the dose, titre
        units), ``PLATEAU`` (long-term titre per unit dose, titre units, usually below
        ``PEAK``), ``K`` (decay rate constant of the transient part, 1/time; half-life
        ``log(2) / K``).

    Notes
    -----
    In ``derived``: ``titre = ind.PEAK * (a.Transient + a.Persistent)`` (usually fitted
    on the log scale, e.g. ``bn.error.Exponential``). The instantaneous peak is an
    idealisation: observations during the rise (the first 1-3 weeks after vaccination)
    should be excluded or modelled with a lag ``ALAG1``. This is the standard
    "exponential decay to a plateau" (asymptotic exponential) form of post-vaccination
    antibody kinetics: a short-lived component decaying at ``K`` plus a persistent one,
    the limit of bi-exponential antibody decay models (short- and long-lived
    antibody-secreting cells, e.g. Andraud et al. (2012), PLoS ONE 7:e49824) when the
    long-lived component does not decay over the observation period.

    Examples
    --------
    >>> import bayes_nlme as bn
    >>> ab = bn.pk.antibody_decay_to_plateau()
    >>> ab.compartments, ab.required
    (('Transient', 'Persistent'), ('PEAK', 'PLATEAU', 'K'))
    >>> def derived(p, a, ind):
    ...     titre = ind.PEAK * (a.Transient + a.Persistent)
    ...     return dict(DV=bn.error.Exponential(titre, sd=p.log_sd))
    """

    def rhs(t, a, p):
        out = p.K * a.Transient
        return {"Transient": -out, "Persistent": p.PLATEAU / p.PEAK * out}

    return ODE(
        _name(rhs, "antibody_decay_to_plateau"),
        ("Transient", "Persistent"),
        ("PEAK", "PLATEAU", "K"),
        **ode_options,
    )
