"""Structural (PK) models: one subject in, compartment amounts out.

``ODE(rhs, compartments, required)`` solves a user-written right-hand side with diffrax
between dose events (see :class:`ODE`); the analytic models below are closed forms.
``ODE(pd_rhs, ("Effect",), required, pk=Depots1Central1())`` couples the two: the closed
form drives the numerically integrated (PD) states.

Analytic linear models, named Pumas-style with compartments in NONMEM CMT order:

========================== ================================ ==================
class                      compartments (CMT 1, 2, ...)     required
========================== ================================ ==================
``Central1``               Central                          CL, V
``Depots1Central1``        Depot, Central                   KA, CL, V
``Central1Periph1``        Central, Peripheral              CL, V, Q, V2
``Depots1Central1Periph1`` Depot, Central, Peripheral       KA, CL, V, Q, V2
``Central1Periph2``        Central, Peripheral1,            CL, V, Q, V2, Q3, V3
                           Peripheral2
``Depots1Central1Periph2`` Depot, Central, Peripheral1,     KA, CL, V, Q, V2,
                           Peripheral2                      Q3, V3
========================== ================================ ==================

All accept optional ``F<n>`` (bioavailability) and ``ALAG<n>`` (lag time) per CMT, and
steady-state doses (``Doses.ss`` 1 or 2 with ``Doses.ii`` > 0, NONMEM SS=1/SS=2). The
3-compartment names follow NONMEM ADVAN11/12 TRANS4 with ``V``/``Q``/``V2`` for the central
volume and the first peripheral, ``Q3``/``V3`` for the second.

Mechanistic model library: factories returning configured ``ODE`` models (keyword
arguments go to ``ODE``: ``rtol``, ``solver``, ...). States with an endogenous baseline are
deviations from it (zero at rest; see each docstring for the absolute values):

=============================== ================================ =========================
factory                         compartments (CMT 1, 2, ...)     required
=============================== ================================ =========================
``michaelis_menten("oral")``    Depot, Central                   KA, V, VM, KM
``michaelis_menten("iv")``      Central                          V, VM, KM
``transit_absorption(n)``       Transit1..Transit<n>, Depot,     KTR, KA, CL, V
                                Central
``tmdd_full()``                 Central, Target, Complex         CL, V, KON, KOFF, KINT,
                                                                 KDEG, R0
``tmdd_qss()``                  Central, Target                  CL, V, KSS, KINT, KDEG, R0
``indirect_response(kind)``     Depot, Central, Response         KA, CL, V, R0, KOUT,
                                                                 IMAX, IC50 (kinds 1-2) or
                                                                 EMAX, EC50 (kinds 3-4)
``effect_compartment()``        Depot, Central, Effect           KA, CL, V, KE0
``friberg()``                   Central, Prol, Transit1-3, Circ  CL, V, MTT, GAMMA, SLOPE
``antibody_decay_to_plateau()`` Transient, Persistent            PEAK, PLATEAU, K
=============================== ================================ =========================

Helpers for ``derived``: ``sigmoid_emax(ce, e0, emax, ec50, hill)``,
``tmdd_full_concentrations(...)`` and ``tmdd_qss_concentrations(...)`` (free and total drug
and target).
"""

from ._analytic import (
    Central1,
    Central1Periph1,
    Central1Periph2,
    Depots1Central1,
    Depots1Central1Periph1,
    Depots1Central1Periph2,
)
from ._base import AbstractPKModel
from ._library import (
    antibody_decay_to_plateau,
    effect_compartment,
    friberg,
    indirect_response,
    michaelis_menten,
    sigmoid_emax,
    tmdd_full,
    tmdd_full_concentrations,
    tmdd_qss,
    tmdd_qss_concentrations,
    transit_absorption,
)
from ._ode import ODE, ODESolveError

__all__ = [
    "AbstractPKModel",
    "Central1",
    "Central1Periph1",
    "Central1Periph2",
    "Depots1Central1",
    "Depots1Central1Periph1",
    "Depots1Central1Periph2",
    "ODE",
    "ODESolveError",
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
