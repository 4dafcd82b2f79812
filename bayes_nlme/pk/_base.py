"""The contract every structural model follows: ONE subject in, amounts out."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = ["AbstractPKModel"]


class AbstractPKModel(abc.ABC):
    """A structural model for one subject.

    Subclasses set the class attributes and implement :meth:`amounts`. Models are written for
    one subject; the population layer maps them over subjects with ``jax.vmap``.

    Attributes
    ----------
    compartments : tuple of str
        Compartment names in NONMEM CMT order: ``compartments[0]`` is CMT 1.
    default_dose_cmt : int
        The 1-based CMT a dose with CMT 0 (no CMT column in the data) goes to.
    required : tuple of str
        Names of the individual parameters the model needs (e.g. ``("KA", "CL", "V")``).

    Notes
    -----
    Besides ``required``, every model accepts per-compartment bioavailability ``F<n>``
    (default 1) and lag time ``ALAG<n>`` (default 0), where ``<n>`` is the 1-based CMT
    number, following NONMEM's F1/ALAG1 convention, and the modelled infusion rate ``R<n>``
    and duration ``D<n>`` (NONMEM R1/D1): a dose record with ``RATE = -1`` into CMT ``n``
    is a zero-order infusion at the rate ``R<n>`` lasting ``F<n> AMT / R<n>``; with
    ``RATE = -2`` it lasts ``D<n>`` at the rate ``F<n> AMT / D<n>``; ``ALAG<n>`` delays
    its start as for any dose. ``R<n>`` / ``D<n>`` have no default: they are needed
    whenever the doses into CMT ``n`` use ``RATE = -1`` / ``-2`` (concrete dose arrays:
    an error naming the parameter; traced ones: NaN amounts).

    **Initial state** (``supports_initial``). Models that set ``supports_initial = True``
    also accept ``initial=(t0, a0)`` in :meth:`amounts` (and the ODE models in
    ``solve_status``): the compartments hold the amounts ``a0`` (shape (n_cmt,), dose units)
    at time ``t0``, on top of the doses, as if each ``a0[k]`` were a bolus into
    compartment ``k`` at ``t0`` that bypasses ``F<n>`` and ``ALAG<n>``. The population
    layer uses it to carry the amounts across the change times of time-varying covariates
    (:class:`bayes_nlme.Model`); derivatives with respect to ``a0`` are supported.
    """

    compartments: ClassVar[tuple[str, ...]]
    default_dose_cmt: ClassVar[int]
    required: ClassVar[tuple[str, ...]]
    #: Whether :meth:`amounts` accepts ``initial=(t0, a0)`` (see Notes).
    supports_initial: ClassVar[bool] = False

    @property
    def optional(self) -> tuple[str, ...]:
        """Optional per-compartment parameters: ``F<n>``, ``ALAG<n>``, ``R<n>``, ``D<n>``."""
        n = len(self.compartments)
        return tuple(f"{pre}{k}" for pre in ("F", "ALAG", "R", "D") for k in range(1, n + 1))

    def cmt_problem(self, cmt, mask, who: str | None = None) -> str | None:
        """Eager check of concrete dose CMTs: a message naming the bad CMTs, or None.

        Parameters
        ----------
        cmt, mask : ndarray, shape (n_dose,)
            NONMEM CMT of each dose (0 = default) and the padding mask.
        who : str, optional
            How the model is named in the message (default its class name).
        """
        n = len(self.compartments)
        bad = mask & ((cmt < 0) | (cmt > n))
        if not bad.any():
            return None
        return (
            f"{who or type(self).__name__} has compartments {list(self.compartments)} "
            f"(CMT 1..{n}, 0 = default {self.default_dose_cmt}); got dose CMT "
            f"{sorted(set(cmt[bad].tolist()))}."
        )

    @abc.abstractmethod
    def amounts(self, params: Mapping[str, Any], doses: Any, times: Any) -> Any:
        """Amount in every compartment at the given times, for one subject.

        Parameters
        ----------
        params : mapping of str to scalar
            Individual parameters: every name in ``required``, plus optional ``F<n>`` /
            ``ALAG<n>`` / ``R<n>`` / ``D<n>``. Unknown names are ignored.
        doses : Doses
            One subject's dose events, each field of shape (n_dose,); see
            :class:`bayes_nlme.data.Doses`. Masked-out events contribute nothing.
        times : array, shape (n_time,)
            Times at which to evaluate (any order; padding values are allowed).

        Returns
        -------
        array, shape (n_time, n_cmt)
            Amounts (dose units), column ``k`` is ``compartments[k]``. A dose given at the
            same time as an evaluation time (after its lag) is included in that value.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
