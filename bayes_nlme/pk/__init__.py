"""Structural (PK) models: one subject in, compartment amounts out.

Analytic linear models, named Pumas-style with compartments in NONMEM CMT order:

========================== ================================ ==================
class                      compartments (CMT 1, 2, ...)     required
========================== ================================ ==================
``Central1``               Central                          CL, V
``Depots1Central1``        Depot, Central                   KA, CL, V
``Central1Periph1``        Central, Peripheral              CL, V, Q, V2
``Depots1Central1Periph1`` Depot, Central, Peripheral       KA, CL, V, Q, V2
========================== ================================ ==================

All accept optional ``F<n>`` (bioavailability) and ``ALAG<n>`` (lag time) per CMT.
"""

from ._analytic import Central1, Central1Periph1, Depots1Central1, Depots1Central1Periph1
from ._base import AbstractPKModel

__all__ = [
    "AbstractPKModel",
    "Central1",
    "Central1Periph1",
    "Depots1Central1",
    "Depots1Central1Periph1",
]
