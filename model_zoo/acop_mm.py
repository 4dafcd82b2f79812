"""ACOP 2016 Bolus_1CPTMM: recover a known Michaelis-Menten model from simulated IV boluses.

Data: the bundled ``acop_bolus_1cptmm`` set (120 simulated subjects, 30 at each IV bolus dose
of 10, 20, 40 and 80 mg = 10,000-80,000 µg, concentrations in µg/L), single-dose part only
(SD == 1: one bolus at t = 0 and 19 samples over 72 h per subject). DV is the observation
(rounded to 0.1 µg/L; LNDV is the unrounded log, not used). Samples whose value rounded to 0
are EVID=2 records (10 in all, 6 in the single-dose part, at 60-72 h after 10 mg), which
``read_nonmem`` drops; 2274 concentrations remain. The file has no SS or II column.

Model (the one that generated the data, ``bn.pk.michaelis_menten("iv")``, NONMEM
ADVAN10-like)::

    dCentral/dt = -VM C / (KM + C),   C = Central / V

with log-normal IIV on V, VM and KM (diagonal OMEGA) and exponential residual error
(``exp_sd``, log scale). V and VM are MU-referenced: 19 samples per subject determine them
well, so ``log V_i ~ N(log tvv, omega_v_sd)`` and ``log VM_i`` are sampled directly (see
``bn.IIV(mu=...)``). KM is determined poorly per subject (only the doses above KM inform
it), so its ETA stays non-centred (``centered=["v", "vm"]``), and NUTS adapts a dense mass
matrix for the correlated ``tvvm``, ``tvkm`` and ``omega_km_sd`` (``fit_options``).
Measured with the defaults (4 chains x (1000 + 1000)), max R-hat: centred 1.059; all three
MU-referenced 1.023 (``tvkm``); plus the dense block 1.018; KM non-centred 1.012
(``omega_km_sd``); KM non-centred with the dense block 1.008 (one divergent transition),
and with ``target_accept=0.95`` (these settings) 1.006, min bulk ESS 353, no divergent
transitions (tvv 66.7, tvvm 927, tvkm 220, IIV SDs 0.30 / 0.31 / 0.29, exp_sd 0.201).
The doses take the concentrations from far above KM (up to about 3600 µg/L, near zero-order
elimination) to far below it (linear, ``CL = VM / KM`` about 4 L/h).

Parameters: ``tvv`` (L), ``tvvm`` (µg/h, maximal elimination rate), ``tvkm`` (µg/L,
concentration at half-maximal elimination); ``omega_v_sd``, ``omega_vm_sd``, ``omega_km_sd``
(SDs of the ETAs, log scale); ``exp_sd``.
Truth (truth.csv, empirical geometric means and log-scale SDs of the 120 subjects' true
individual values): V 66.50 L, VM 1000.5 µg/h, KM 251.9 µg/L; IIV SDs 0.30 / 0.30 / 0.31
(documented: V 70, VM 1000, KM 250, 30% each); residual SD 0.2.

Run: ``bayes-nlme fit acop_mm``.
"""

import jax.numpy as jnp

import bayes_nlme as bn
from bayes_nlme import dist

model = bn.Model(
    name="acop_mm",
    params=dict(
        tvv=bn.Param(dist.LogNormal(jnp.log(50.0), 1.0), unit="L", label="volume"),
        tvvm=bn.Param(
            dist.LogNormal(jnp.log(500.0), 1.0), unit="µg/h", label="maximal elimination rate"
        ),
        tvkm=bn.Param(dist.LogNormal(jnp.log(100.0), 1.0), unit="µg/L", label="Michaelis constant"),
        exp_sd=bn.Param(dist.HalfNormal(0.5), label="exponential residual SD (log scale)"),
    ),
    # V and VM MU-referenced: the sampled log V_i, log VM_i are nearly independent of the
    # typical values (centred ETAs alone gave R-hat 1.06 for tvv); KM non-centred
    random=bn.IIV(
        ["v", "vm", "km"],
        sd=dist.HalfNormal(0.5),
        mu=dict(v="tvv", vm="tvvm"),
        centered=["v", "vm"],
    ),
    pre=lambda p, eta, cov: dict(
        V=p.tvv * jnp.exp(eta.v),
        VM=p.tvvm * jnp.exp(eta.vm),
        KM=p.tvkm * jnp.exp(eta.km),
    ),
    # atol in µg: doses are 10,000-80,000 µg, the lowest concentration (0.1 µg/L) is ~5 µg
    dynamics=bn.pk.michaelis_menten("iv", rtol=1e-6, atol=1e-3),
    derived=lambda p, a, ind: dict(DV=bn.error.Exponential(a.Central / ind.V, sd=p.exp_sd)),
)

# VM and KM trade off (the same linear clearance VM/KM), and OMEGA_KM with them
fit_options = dict(dense_mass=[("tvvm", "tvkm", "omega_km_sd")], target_accept=0.95)

read_options: dict = {}
plot_labels = dict(dv_label="Concentration (µg/L)", time_label="Time (h)")


def data():
    """The default dataset: the single-dose part (SD == 1) of ACOP Bolus_1CPTMM."""
    df = bn.datasets.load("acop_bolus_1cptmm")
    return df[df["SD"] == 1].reset_index(drop=True)


if __name__ == "__main__":
    import sys

    from bayes_nlme._cli import main

    sys.exit(main(["fit", __file__, *sys.argv[1:]]))
