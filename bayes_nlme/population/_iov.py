"""Declaration of inter-occasion variability (IOV): one extra random effect per occasion."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpyro.distributions as dist

__all__ = ["IOV"]


@dataclasses.dataclass(frozen=True)
class IOV:
    """Inter-occasion variability: KAPPA ~ N(0, OMEGA_IOV), one per subject and occasion.

    Each subject gets, for every occasion ``k`` of the occasion column and every name, a
    random effect ``KAPPA_ik ~ N(0, omega_iov_<name>_sd²)``, independent across occasions
    and subjects, sampled non-centred (``z_kappa``). In ``pre`` it is ``eta.kappa_<name>``,
    the KAPPA of the occasion being evaluated, so that e.g.
    ``CL = p.tvcl * exp(eta.cl + eta.kappa_cl)`` (Karlsson & Sheiner 1993; NONMEM's
    ``CL = TVCL*EXP(ETA(1) + OCC1*ETA(3) + OCC2*ETA(4))`` with ``$OMEGA BLOCK SAME``).
    The results hold ``kappa_<name>`` with dims ``(ID, OCC)`` and ``omega_iov_<name>_sd``.

    Parameters
    ----------
    names : sequence of str
        Parameters with IOV, e.g. ``["cl", "v"]``; any names (they need not be IIV names).
    occasion : str
        The dataset column that numbers the occasions (e.g. ``"OCC"``), matched
        case-insensitively. Its values are the ``OCC`` coordinates.
    sd : Distribution or mapping of str to Distribution, default HalfNormal(0.3)
        Prior of each IOV SD (log-scale SD for log-normal parameters).

    Notes
    -----
    An occasion must start with a reset (EVID=4 on its first dose, or EVID=3; see
    :func:`bayes_nlme.read_nonmem` and its ``reset_on_time_decrease``), so that each
    subject-occasion is evaluated with its own parameters from zero amounts: the structural
    models carry no amounts across a change of parameters. A dataset whose occasion column
    changes without a reset is reported as an error.

    Raises
    ------
    ValueError
        If names repeat, are not identifiers, or a name lacks an SD prior.
    """

    names: Sequence[str]
    occasion: str = "OCC"
    sd: Any = dataclasses.field(default_factory=lambda: dist.HalfNormal(0.3))

    def __post_init__(self):
        names = tuple(self.names)
        object.__setattr__(self, "names", names)
        if not names:
            raise ValueError("IOV needs at least one name, e.g. IOV(['cl'], occasion='OCC').")
        bad = sorted(n for n in names if not str(n).isidentifier())
        if bad:
            raise ValueError(f"IOV names must be Python identifiers; got {bad}.")
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise ValueError(f"IOV names must be unique; repeated: {dups}.")
        if isinstance(self.sd, Mapping):
            missing = sorted(set(names) - set(self.sd))
            if missing:
                raise ValueError(f"IOV sd priors are missing for {missing}.")

    def sd_prior(self, name: str) -> dist.Distribution:
        """The prior of ``omega_iov_<name>_sd``."""
        return self.sd[name] if isinstance(self.sd, Mapping) else self.sd

    def sd_names(self) -> list[str]:
        """``omega_iov_<name>_sd`` for each name."""
        return [f"omega_iov_{n}_sd" for n in self.names]
