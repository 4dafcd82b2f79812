"""Structural (PK) models: one subject in, compartment amounts out.

``ODE(rhs, compartments, required)`` solves a user-written right-hand side with diffrax
between dose events (see :class:`ODE`); the analytic models below are closed forms.

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
]
