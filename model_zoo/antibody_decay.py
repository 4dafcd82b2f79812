"""Antibody decay to a plateau: titres over a year after one vaccination (simulated data).

Data: simulated by :func:`data` with ``bn.simulate`` from this model at the known truth
``TRUTH`` (seed 1): ``n_id`` subjects (default 30), one vaccination at t = 0 (``AMT = 1``
into CMT 1, ``Transient``), antibody titres (arbitrary units, AU/mL; CMT 1 on the
observation rows) on days 14, 28, 56, 90, 120, 180, 270 and 365. The first sample is two
weeks after the vaccination: the rise to the peak is not modelled (the peak is
instantaneous at t = 0, see :func:`bayes_nlme.pk.antibody_decay_to_plateau`). Decay
half-lives of about a month and a year of follow-up separate the transient part (``PEAK``,
``K``) from the plateau.

Model (``bn.pk.antibody_decay_to_plateau()``)::

    titre(t) = PLATEAU + (PEAK - PLATEAU) exp(-K t)        (one dose, AMT = 1)

solved as the linear ODE ``dTransient/dt = -K Transient``, ``dPersistent/dt = K (PLATEAU /
PEAK) Transient``, ``titre = PEAK (Transient + Persistent)``.

- IIV: log-normal on PEAK, PLATEAU and K (diagonal OMEGA, MU-referenced, ``bn.IIV(mu=...)``:
  every subject has eight titres; plain centred ETAs gave R-hat 1.05 for ``tvplateau`` in the
  recovery test's short run).
- Residual: exponential (log-normal, ``log DV = log titre + EPS``), ``exp_sd`` (log scale).

Parameters: ``tvpeak`` (AU/mL, titre extrapolated to the vaccination), ``tvplateau``
(AU/mL, long-term titre), ``tvk`` (1/day, decay rate constant of the transient part;
half-life ``log(2) / K``); ``omega_peak_sd``, ``omega_plateau_sd``, ``omega_k_sd`` (SDs of
the ETAs, log scale); ``exp_sd``.

Truth (``TRUTH``): tvpeak 2000 AU/mL, tvplateau 200 AU/mL, tvk 0.035 1/day (half-life 20
days), omega_peak_sd 0.4, omega_plateau_sd 0.3, omega_k_sd 0.3, exp_sd 0.2.

Run: ``bayes-nlme fit antibody_decay`` (or ``python model_zoo/antibody_decay.py``).
"""

import jax.numpy as jnp
import numpy as np
import pandas as pd

import bayes_nlme as bn
from bayes_nlme import dist

TRUTH = dict(
    tvpeak=2000.0,
    tvplateau=200.0,
    tvk=0.035,
    omega_peak_sd=0.4,
    omega_plateau_sd=0.3,
    omega_k_sd=0.3,
    exp_sd=0.2,
)

model = bn.Model(
    name="antibody_decay",
    params=dict(
        tvpeak=bn.Param(dist.LogNormal(jnp.log(1000.0), 1.5), unit="AU/mL", label="peak titre"),
        tvplateau=bn.Param(
            dist.LogNormal(jnp.log(100.0), 1.5), unit="AU/mL", label="plateau titre"
        ),
        tvk=bn.Param(dist.LogNormal(jnp.log(0.02), 1.0), unit="1/day", label="decay rate"),
        exp_sd=bn.Param(dist.HalfNormal(0.5), label="exponential residual SD (log scale)"),
    ),
    random=bn.IIV(
        ["peak", "plateau", "k"],
        sd=dist.HalfNormal(0.7),
        mu=dict(peak="tvpeak", plateau="tvplateau", k="tvk"),
    ),
    pre=lambda p, eta, cov: dict(
        PEAK=p.tvpeak * jnp.exp(eta.peak),
        PLATEAU=p.tvplateau * jnp.exp(eta.plateau),
        K=p.tvk * jnp.exp(eta.k),
    ),
    # amounts are fractions of the unit dose (0 to 1)
    dynamics=bn.pk.antibody_decay_to_plateau(rtol=1e-6, atol=1e-9),
    derived=lambda p, a, ind: dict(
        DV=bn.error.Exponential(ind.PEAK * (a.Transient + a.Persistent), sd=p.exp_sd)
    ),
)

read_options: dict = {}
plot_labels = dict(dv_label="Antibody titre (AU/mL)", time_label="Time after vaccination (days)")

DAYS = (14.0, 28.0, 56.0, 90.0, 120.0, 180.0, 270.0, 365.0)


def design(n_id: int = 30) -> pd.DataFrame:
    """The NONMEM-format design (DV = 0): one vaccination (AMT 1) per subject at t = 0."""
    rows = []
    for i in range(1, n_id + 1):
        rows.append(dict(ID=i, TIME=0.0, AMT=1.0, DV=0.0, EVID=1, MDV=1, CMT=1))
        rows += [dict(ID=i, TIME=t, AMT=0.0, DV=0.0, EVID=0, MDV=0, CMT=1) for t in DAYS]
    return pd.DataFrame(rows)


def data(n_id: int = 30, seed: int = 1) -> pd.DataFrame:
    """The default dataset: ``n_id`` subjects simulated at ``TRUTH`` (NONMEM format)."""
    table = design(n_id)
    sim = bn.simulate(model, table, TRUTH, seed=seed)
    obs = table.EVID == 0
    table.loc[obs, "DV"] = np.asarray(sim.predictions["DV"].values[0, 0])
    return table


if __name__ == "__main__":
    import sys

    from bayes_nlme._cli import main

    sys.exit(main(["fit", __file__, *sys.argv[1:]]))
