"""Simulate-then-recover fits of PK library models through their model_zoo scripts:
``transit_absorption`` (``bn.pk.transit_absorption(3)``) and ``indirect_response``
(``bn.pk.indirect_response(3)``, PK and a turnover response). Checks: see
``tests/zoo_recovery.py``. These replace the smoke runs of ``tests/test_zoo.py``."""

import pytest
from zoo_recovery import check_recovery, fit_script

from bayes_nlme.model_zoo import indirect_response, transit_absorption


@pytest.mark.slow
def test_transit_absorption_zoo_simulate_then_recover(tmp_path):
    # tree depth 7 caps the early-warmup trees (up to 1023 steps); adapted trees take ~64
    fit_script("transit_absorption", tmp_path, warmup=200, samples=200, max_tree_depth=7)
    check_recovery(transit_absorption, tmp_path)


@pytest.mark.slow
def test_indirect_response_zoo_simulate_then_recover(tmp_path):
    fit_script("indirect_response", tmp_path, warmup=200, samples=200, max_tree_depth=7)
    check_recovery(
        indirect_response, tmp_path, figures=("individual_fits.png", "individual_fits_resp.png")
    )
