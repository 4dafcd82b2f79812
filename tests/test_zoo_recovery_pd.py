"""Simulate-then-recover fits of PD library models through their model_zoo scripts:
``effect_compartment`` (``bn.pk.effect_compartment`` with ``bn.pk.sigmoid_emax``, two
endpoints), ``antibody_decay`` (``bn.pk.antibody_decay_to_plateau``) and ``friberg``
(``bn.pk.friberg``: 12 patients, two 21-day cycles at three dose levels, 11 ANC counts each,
PK known per patient). Checks: see ``tests/zoo_recovery.py``. These replace the smoke runs
of ``tests/test_zoo.py``."""

import pytest
from zoo_recovery import check_recovery, fit_script

from bayes_nlme.model_zoo import antibody_decay, effect_compartment, friberg


@pytest.mark.slow
def test_effect_compartment_zoo_simulate_then_recover(tmp_path):
    fit_script("effect_compartment", tmp_path, warmup=200, samples=200, max_tree_depth=7)
    # two endpoints: one figure per output, the second one named after it
    check_recovery(
        effect_compartment, tmp_path, figures=("individual_fits.png", "individual_fits_effect.png")
    )


@pytest.mark.slow
def test_antibody_decay_zoo_simulate_then_recover(tmp_path):
    fit_script("antibody_decay", tmp_path, warmup=300, samples=300, max_tree_depth=8)
    check_recovery(antibody_decay, tmp_path)


@pytest.mark.slow
def test_friberg_zoo_simulate_then_recover(tmp_path):
    # 200 warmup iterations give NUTS two mass-matrix windows (with 150, one of 25 draws:
    # max R-hat 1.037 and bulk ESS 44); tree depth 4 caps trees at 15 leapfrog steps
    # (unrestricted, the adapted trees take 15-31), which halves the cost and still gives
    # max R-hat 1.016, bulk ESS >= 66 from 2 x 150 draws
    fit_script("friberg", tmp_path, warmup=200, samples=150, max_tree_depth=4)
    check_recovery(friberg, tmp_path)
