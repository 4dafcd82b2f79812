"""Warfarin PK/PD: joint fit of concentrations (cp) and prothrombin complex activity (pca).

Data: the bundled ``warfarin`` set (O'Reilly; 32 subjects, one oral dose of 1.5 mg/kg at
t = 0, 251 concentrations in mg/L and 232 PCA values in % of normal over 6 days; the DVID
column ``dvid`` says which, and the lower-case column names are read case-insensitively).

Model:

- PK: one compartment with first-order absorption after a lag time (``ALAG1``), clearance
  and volume scaled to body weight allometrically (exponents 0.75 and 1, fixed, reference
  70 kg): ``CL = tvcl (WT/70)^0.75 exp(eta_cl)``, ``V = tvv (WT/70) exp(eta_v)``.
- PD: turnover (indirect response model I, Dayneka et al. 1993) with inhibition of the input
  by the concentration: ``dR/dt = kin (1 - Imax C / (IC50 + C)) - kout R`` with
  ``kin = R0 kout``, ``R(0) = R0``. Solved numerically as the deviation ``E = R - R0``
  (zero at t = 0, so the ODE starts from zero amounts), ``PCA = R0 + E``, driven by the
  closed-form PK (``bn.pk.ODE(..., pk=bn.pk.Depots1Central1())``, as nlmixr2's
  ``linCmt()`` in an ODE model): only the PD state is integrated. With the depot in the
  ODE, a fast absorber (KA of 10-30/h, which the IIV on KA reaches) made the explicit
  solver take steps of order 1/KA over the 144 h (stiffness): 5-15x the cost of a
  gradient, and solver failures beyond.
- IIV (log-normal, diagonal OMEGA): CL, V, KA, R0, IC50, MU-referenced (the log individual
  parameters ``log CL_i ~ N(log tvcl + 0.75 log(WT/70), omega_cl_sd)`` and so on are
  sampled, see ``bn.IIV(mu=...)``). Residual error: combined (variances
  add, NONMEM style) for ``cp``, additive for ``pca``.

Parameters (70 kg subject): ``tvtlag`` (h), ``tvka`` (1/h), ``tvv`` (L), ``tvcl`` (L/h),
``tvr0`` (%), ``tvkout`` (1/h), ``tvimax`` (fraction; fixed at 1, complete inhibition:
estimated, its posterior sat on the boundary at 0.994 and the fit had divergent transitions),
``tvic50`` (mg/L); IIV SDs
``omega_<name>_sd``; residual SDs ``cp_add_sd`` (mg/L), ``cp_prop_sd`` (fraction),
``pca_add_sd`` (%).

Run: ``bayes-nlme fit warfarin_pkpd``.
"""

import jax.numpy as jnp

import bayes_nlme as bn
from bayes_nlme import dist


def _pd_rhs(t, a, p):
    # a.Central: the closed-form PK amount (pk= below); only the PD state is integrated
    c = a.Central / p.V
    inhibition = p.IMAX * c / (p.IC50 + c)
    return {"Effect": -p.R0 * p.KOUT * inhibition - p.KOUT * a.Effect}


dynamics = bn.pk.ODE(
    _pd_rhs,
    compartments=("Effect",),
    required=("R0", "KOUT", "IMAX", "IC50"),
    pk=bn.pk.Depots1Central1(),
    rtol=1e-6,
    atol=1e-8,
)


def _pre(p, eta, cov):
    return dict(
        KA=p.tvka * jnp.exp(eta.ka),
        CL=p.tvcl * bn.covariate.power(cov.wt, 70.0, 0.75) * jnp.exp(eta.cl),
        V=p.tvv * bn.covariate.power(cov.wt, 70.0, 1.0) * jnp.exp(eta.v),
        ALAG1=p.tvtlag,
        R0=p.tvr0 * jnp.exp(eta.r0),
        KOUT=p.tvkout,
        IMAX=p.tvimax,
        IC50=p.tvic50 * jnp.exp(eta.ic50),
    )


def _mu(p, cov):
    """MU-referencing: the expected log individual parameters (as in ``_pre``)."""
    return dict(
        cl=jnp.log(p.tvcl) + 0.75 * jnp.log(cov.wt / 70.0),
        v=jnp.log(p.tvv) + jnp.log(cov.wt / 70.0),
        ka=jnp.log(p.tvka),
        r0=jnp.log(p.tvr0),
        ic50=jnp.log(p.tvic50),
    )


def _derived(p, a, ind):
    cp = a.Central / ind.V
    return dict(
        cp=bn.error.Combined(cp, add_sd=p.cp_add_sd, prop_sd=p.cp_prop_sd, form="var"),
        pca=bn.error.Additive(ind.R0 + a.Effect, sd=p.pca_add_sd),
    )


model = bn.Model(
    name="warfarin_pkpd",
    params=dict(
        tvtlag=bn.Param(dist.LogNormal(jnp.log(0.8), 0.5), unit="h", label="lag time"),
        tvka=bn.Param(dist.LogNormal(jnp.log(1.0), 1.0), unit="1/h", label="absorption rate"),
        tvv=bn.Param(dist.LogNormal(jnp.log(8.0), 0.5), unit="L", label="volume (70 kg)"),
        tvcl=bn.Param(dist.LogNormal(jnp.log(0.15), 0.5), unit="L/h", label="clearance (70 kg)"),
        tvr0=bn.Param(dist.LogNormal(jnp.log(95.0), 0.2), unit="%", label="baseline PCA"),
        tvkout=bn.Param(dist.LogNormal(jnp.log(0.03), 0.7), unit="1/h", label="PCA turnover"),
        # Fixed at complete inhibition: estimated with a Beta(4, 1) prior its posterior sat
        # on the boundary (median 0.994) and, with IC50, gave divergent transitions.
        tvimax=bn.Param.fixed(1.0, label="maximal inhibition of PCA synthesis"),
        tvic50=bn.Param(dist.LogNormal(jnp.log(1.0), 1.0), unit="mg/L", label="IC50"),
        cp_add_sd=bn.Param(dist.HalfNormal(0.5), unit="mg/L", label="cp additive SD"),
        cp_prop_sd=bn.Param(dist.HalfNormal(0.2), label="cp proportional SD"),
        pca_add_sd=bn.Param(dist.HalfNormal(5.0), unit="%", label="pca additive SD"),
    ),
    random=bn.IIV(["cl", "v", "ka", "r0", "ic50"], sd=dist.HalfNormal(0.5), mu=_mu),
    pre=_pre,
    dynamics=dynamics,
    derived=_derived,
    covariates=["wt"],
)

read_options: dict = {}
# Chains start with every subject's ETAs at their empirical Bayes estimates (bn.fit's
# init="ebe"): from ETA = 0 the start's potential energy is ~3400 against ~950 in the
# posterior, and about one chain in six turned it into momentum that carried it to a
# PCA turnover KOUT of ~21/h, where its step size collapsed to 1e-7 (a stalled chain).
# target_accept 0.99: four subjects have concentrations at exactly 1.0 h, so the likelihood
# has a kink where the lag time reaches 1.0 h (their predictions there drop to 0). At 0.9
# that kink gave 2 divergences in 4000 draws, both at tvtlag > 0.94 h; at 0.99, none
# (4 x (1000 + 1000), R-hat <= 1.0031, twice the leapfrog steps: 26 min on 2 CPU cores).
fit_options = dict(init="ebe", target_accept=0.99)
plot_labels = dict(dv_label="cp (mg/L) / PCA (%)", time_label="Time (h)")


def data():
    """The default dataset: warfarin PK/PD, all 32 subjects."""
    return bn.datasets.load("warfarin")


if __name__ == "__main__":
    import sys

    from bayes_nlme._cli import main

    sys.exit(main(["fit", __file__, *sys.argv[1:]]))
