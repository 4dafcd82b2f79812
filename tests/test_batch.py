"""fit_batch (many fits in one compiled program), sharding over host devices, SBC, and
resumable batch jobs (kill -9), local and on a Dask cluster on loopback."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import bayes_nlme as bn
from bayes_nlme import dist
from bayes_nlme.batch import sbc, simulate_datasets
from bayes_nlme.batch._jobs import JobError, load_job, run_job

TIMES = [0.5, 1.0, 2.0, 4.0, 8.0, 12.0]


def iv_model(cl_prior_sd=0.5, name="iv1"):
    """1-cpt IV bolus, IIV on CL, proportional error: small and fast."""
    return bn.Model(
        name=name,
        params=dict(
            tvcl=bn.Param(dist.LogNormal(jnp.log(2.0), cl_prior_sd), unit="L/h"),
            tvv=bn.Param(dist.LogNormal(jnp.log(20.0), 0.3), unit="L"),
            prop_sd=bn.Param(dist.HalfNormal(0.2)),
        ),
        random=bn.IIV(["cl"], sd=dist.HalfNormal(0.3)),
        pre=lambda p, eta, cov: dict(CL=p.tvcl * jnp.exp(eta.cl), V=p.tvv),
        dynamics=bn.pk.Central1(),
        derived=lambda p, a, ind: dict(DV=bn.error.Proportional(a.Central / ind.V, sd=p.prop_sd)),
    )


def design(n_id=6, times=TIMES):
    rows = []
    for i in range(1, n_id + 1):
        rows.append(dict(ID=i, TIME=0.0, AMT=100.0, DV=".", EVID=1, CMT=1))
        rows += [dict(ID=i, TIME=t, AMT=0.0, DV=1.0, EVID=0, CMT=1) for t in times]
    return pd.DataFrame(rows)


TRUTH = dict(tvcl=2.0, tvv=20.0, prop_sd=0.1, omega_cl_sd=0.3)
MODEL = iv_model()


def _max_rel(a, b):
    """Largest difference relative to max(|a|, 1) (log-likelihoods cross 0)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1.0)))


def _assert_same(
    idata_a, idata_b, rtol, names=("tvcl", "tvv", "prop_sd", "omega_cl_sd", "CL", "IPRED")
):
    for n in names:
        assert idata_a.posterior[n].shape == idata_b.posterior[n].shape, n
        assert _max_rel(idata_a.posterior[n], idata_b.posterior[n]) < rtol, n
    assert np.array_equal(idata_a.log_likelihood["DV"].shape, idata_b.log_likelihood["DV"].shape)
    assert _max_rel(idata_a.log_likelihood["DV"], idata_b.log_likelihood["DV"]) < rtol


@pytest.fixture(scope="module")
def trials():
    datasets, truth = simulate_datasets(MODEL, design(), 4, truth=TRUTH, seed=5)
    return datasets


def test_simulate_datasets_fixed_truth_and_prior(trials):
    assert len(trials) == 4
    dvs = np.stack([d.dv for d in trials])
    assert dvs.shape == (4, 36) and np.all(np.isfinite(dvs)) and np.all(dvs > 0)
    assert not np.allclose(dvs[0], dvs[1])  # new ETAs and residuals per trial
    _, truth = simulate_datasets(MODEL, design(), 5, truth="prior", seed=1)
    assert set(truth) == {"tvcl", "tvv", "prop_sd", "omega_cl_sd"}
    assert truth["tvcl"].shape == (5,) and np.unique(truth["tvcl"]).size == 5
    with pytest.raises(bn.ModelError, match="missing"):
        simulate_datasets(MODEL, design(), 2, truth={"tvcl": 2.0})


@pytest.mark.slow
def test_fit_batch_equals_separate_fits(trials):
    """Each dataset's draws equal a separate fit() with the same seed, to round-off.

    NUTS amplifies round-off (NumPyro's own chain methods disagree after ~100
    iterations), so the comparison uses a short run where trajectories have not yet
    separated; equal programs give equal results to ~1e-13 there.
    """
    kw = dict(chains=2, warmup=15, samples=15)
    batch = bn.fit_batch(MODEL, trials[:3], seed=10, devices=1, **kw)
    for i in range(3):
        single = bn.fit(MODEL, trials[i], seed=10 + i, **kw)
        _assert_same(single, batch[i], 1e-8)
        assert batch[i].sample_stats.attrs["seed"] == 10 + i
        assert list(batch[i].posterior["ID"].values) == list(single.posterior["ID"].values)
    # a different seed is a different run
    assert _max_rel(batch[0].posterior["tvcl"], batch[1].posterior["tvcl"]) > 1e-3


@pytest.mark.slow
def test_fit_batch_pads_ragged_datasets_and_groups_subject_counts(trials):
    """Fewer observations (padded, masked) or fewer subjects (own program): each still
    equals its separate fit. With init="ebe": the EBE optimisation runs inside the batch
    program (padded observations do not enter it) and starts the chains where fit() does."""
    short = bn.read_nonmem(design(times=TIMES[:4]))
    short = simulate_datasets(MODEL, short, 1, truth=TRUTH, seed=2)[0][0]
    small = simulate_datasets(MODEL, design(n_id=4), 1, truth=TRUTH, seed=3)[0][0]
    kw = dict(chains=1, warmup=15, samples=15, init="ebe")
    batch = bn.fit_batch(MODEL, [trials[0], short, small], seeds=[1, 2, 3], devices=1, **kw)
    assert batch[0].sample_stats.attrs["init"] == "ebe"
    assert batch[1].posterior["IPRED"].shape[-1] == short.n_obs == 24
    assert batch[1].log_likelihood["DV"].shape[-1] == 24
    assert batch[2].posterior["CL"].shape[-1] == 4
    for ds, idata, seed in [(trials[0], batch[0], 1), (short, batch[1], 2), (small, batch[2], 3)]:
        _assert_same(bn.fit(MODEL, ds, seed=seed, **kw), idata, 1e-8)


@pytest.mark.slow
def test_sharded_equals_unsharded(trials):
    """The batch split over 2 and 4 host CPU devices gives the unsharded draws."""
    assert jax.local_device_count() >= 4  # import bayes_nlme configures host devices
    kw = dict(chains=2, warmup=15, samples=15, seed=3)
    one = bn.fit_batch(MODEL, trials, devices=1, **kw)
    for n_dev in (2, 4):
        many = bn.fit_batch(MODEL, trials, devices=n_dev, **kw)
        for a, b in zip(one, many, strict=True):
            _assert_same(a, b, 1e-8)
    # a batch that does not divide over the devices is filled and trimmed
    three = bn.fit_batch(MODEL, trials[:3], devices=2, **kw)
    assert len(three) == 3
    _assert_same(one[2], three[2], 1e-8)


def test_fit_batch_reports_dataset_errors():
    bad = design()
    bad.loc[bad.EVID == 0, "DV"] = -1.0
    model = bn.Model(
        name="iv_exp",
        params=dict(
            tvcl=bn.Param(dist.LogNormal(0.0, 1.0)),
            tvv=bn.Param(dist.LogNormal(3, 1)),
            sd=bn.Param(dist.HalfNormal(0.2)),
        ),
        pre=lambda p, eta, cov: dict(CL=p.tvcl, V=p.tvv),
        dynamics=bn.pk.Central1(),
        derived=lambda p, a, ind: dict(DV=bn.error.Exponential(a.Central / ind.V, sd=p.sd)),
    )
    with pytest.raises(bn.ModelError, match=r"Dataset 1: .*DV > 0"):
        bn.fit_batch(model, [design(), bad], chains=1, warmup=5, samples=5)
    with pytest.raises(bn.ModelError, match="seeds"):
        bn.fit_batch(model, [design()], seeds=[1, 2], chains=1, warmup=5, samples=5)
    assert bn.fit_batch(model, []) == []
    with pytest.raises(bn.ModelError, match="init must be"):
        bn.fit_batch(model, [design()], init="map")


@pytest.mark.slow
def test_fit_batch_long_run_agrees_with_fit_in_distribution(trials):
    """Over a full-length run the chains separate from fit()'s (round-off amplified), but
    the posterior is the same: medians agree within Monte Carlo error."""
    kw = dict(chains=2, warmup=300, samples=400)
    batch = bn.fit_batch(MODEL, trials[:1], seed=7, **kw)[0]
    single = bn.fit(MODEL, trials[0], seed=7, **kw)
    for n in ("tvcl", "tvv", "prop_sd"):
        a, b = batch.posterior[n].values.ravel(), single.posterior[n].values.ravel()
        se = np.hypot(a.std(), b.std()) / np.sqrt(200)  # ESS >= ~200 per run here
        assert abs(np.median(a) - np.median(b)) < 4 * se, n
    assert int(batch.sample_stats["diverging"].sum()) == 0


@pytest.mark.slow
def test_sbc_passes_for_correct_model_and_fails_for_wrong_prior():
    """SBC: ranks uniform when simulator and fitter agree; a fitter prior on tvcl 10x too
    narrow (SD 0.05 vs 0.5 on the log scale) piles the ranks at the extremes."""
    d = design(n_id=4, times=[1.0, 4.0, 12.0])
    kw = dict(n_datasets=60, n_ranks=49, bins=10, warmup=150, samples=200, seed=11)
    good = sbc(MODEL, d, **kw)
    assert good.passed, good.table()
    assert set(good.pvalues) == {"tvcl", "tvv", "prop_sd", "omega_cl_sd"}
    assert all(r.min() >= 0 and r.max() <= 49 for r in good.ranks.values())
    wrong = sbc(iv_model(cl_prior_sd=0.05, name="narrow"), d, simulator=MODEL, **kw)
    assert not wrong.passed
    assert "tvcl" in wrong.failed
    assert wrong.pvalues["tvcl"] < 1e-6
    import matplotlib

    matplotlib.use("Agg")
    from bayes_nlme.plots import plot_sbc

    fig = plot_sbc(wrong)
    assert len(fig.axes) >= 2 * len(wrong.ranks)


def test_uniformity_pvalue_detects_nonuniform_ranks():
    from bayes_nlme.batch._sbc import _uniformity_pvalue

    rng = np.random.default_rng(0)
    uniform = rng.integers(0, 100, 200)
    assert _uniformity_pvalue(uniform, 99, 10) > 0.01
    u_shape = np.concatenate([rng.integers(0, 10, 100), rng.integers(90, 100, 100)])
    assert _uniformity_pvalue(u_shape, 99, 10) < 1e-10


def _write_job(tmp_path, n=4, engine=None, batch_size=1):
    d = tmp_path / "design.csv"
    design(n_id=4).to_csv(d, index=False)
    model_file = tmp_path / "iv_model.py"
    model_file.write_text(
        "import jax.numpy as jnp\nimport bayes_nlme as bn\nfrom bayes_nlme import dist\n"
        f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_batch import iv_model\nmodel = iv_model()\n"
    )
    text = (
        'model = "iv_model.py"\nout = "out"\n[simulate]\ndesign = "design.csv"\n'
        f"n_datasets = {n}\nseed = 4\n[simulate.truth]\ntvcl = 2.0\ntvv = 20.0\n"
        "prop_sd = 0.1\nomega_cl_sd = 0.3\n"
        f"[sampler]\nchains = 1\nwarmup = 40\nsamples = 40\nseed = 100\nbatch_size = {batch_size}\n"
    )
    if engine:
        text += engine
    job = tmp_path / "job.toml"
    job.write_text(text)
    return job


def _posteriors(out):
    import arviz as az

    res = {}
    for f in sorted((out / "results").glob("*.nc")):
        idata = az.from_netcdf(f)
        res[f.stem] = {n: idata.posterior[n].values.copy() for n in ("tvcl", "z_eta", "IPRED")}
        idata.close()
    return res


@pytest.mark.slow
def test_batch_job_survives_kill_9_and_resumes(tmp_path):
    job = _write_job(tmp_path, n=4)
    env = {**os.environ, "CI": "1"}
    cmd = [sys.executable, "-m", "bayes_nlme._cli", "batch", str(job)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    results = tmp_path / "out" / "results"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if len(list(results.glob("*.nc"))) >= 1:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = sorted(p.name for p in results.glob("*.nc"))
    assert 1 <= len(done_before) < 4
    mtimes = {p.name: p.stat().st_mtime_ns for p in results.glob("*.nc")}
    # restart: finishes, keeps the finished files untouched
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"{len(done_before)} already done" in r.stderr
    names = sorted(p.name for p in results.glob("*.nc"))
    assert names == ["sim_0.nc", "sim_1.nc", "sim_2.nc", "sim_3.nc"]
    assert not list(results.glob(".*tmp"))
    for n in done_before:
        assert (results / n).stat().st_mtime_ns == mtimes[n]
    # identical to an uninterrupted run of the job (in-process: its batches of one dataset)
    resumed = _posteriors(tmp_path / "out")
    spec = load_job(job)
    datasets, _ = simulate_datasets(
        MODEL, str(tmp_path / "design.csv"), 4, truth=spec["simulate"]["truth"], seed=4
    )
    direct = bn.fit_batch(MODEL, datasets, chains=1, warmup=40, samples=40, seed=100, batch_size=1)
    for i, idata in enumerate(direct):
        for n in ("tvcl", "z_eta", "IPRED"):
            np.testing.assert_array_equal(resumed[f"sim_{i}"][n], idata.posterior[n].values)
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert list(summary["dataset"]) == ["sim_0", "sim_1", "sim_2", "sim_3"]
    assert (summary["status"] == "done").all()
    assert {"tvcl_median", "tvcl_true", "tvcl_covered", "divergences"} <= set(summary)
    assert np.allclose(summary["tvcl_true"], 2.0)
    # a changed job in the same directory is refused
    job.write_text(job.read_text().replace("warmup = 40", "warmup = 41"))
    with pytest.raises(JobError, match="different job"):
        run_job(job)


@pytest.mark.slow
def test_batch_job_on_dask_local_cluster(tmp_path):
    pytest.importorskip("dask.distributed")
    job = _write_job(tmp_path, n=4, engine='[engine]\nkind = "dask"\nn_workers = 2\n')
    summary = run_job(job, progress=False)
    table = pd.read_csv(summary)
    assert list(table["status"]) == ["done"] * 4
    resumed = _posteriors(tmp_path / "out")
    spec = load_job(job)
    datasets, _ = simulate_datasets(
        MODEL, str(tmp_path / "design.csv"), 4, truth=spec["simulate"]["truth"], seed=4
    )
    direct = bn.fit_batch(MODEL, datasets[:1], seeds=[100], chains=1, warmup=40, samples=40)
    np.testing.assert_array_equal(resumed["sim_0"]["tvcl"], direct[0].posterior["tvcl"].values)


def test_job_file_errors(tmp_path):
    with pytest.raises(JobError, match="does not exist"):
        load_job(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text('model = "theophylline"\nout = "o"\nfoo = 1\n[simulate]\nn_datasets = 2\n')
    with pytest.raises(JobError, match="Unknown job keys"):
        load_job(bad)
    bad.write_text('model = "theophylline"\nout = "o"\n')
    with pytest.raises(JobError, match="exactly one of"):
        load_job(bad)
    bad.write_text('model = "theophylline"\nout = "o"\n[data]\nfiles = ["none*.csv"]\n')
    with pytest.raises(JobError, match="nothing matches"):
        load_job(bad)
    bad.write_text(
        'model = "theophylline"\nout = "o"\n[simulate]\nn_datasets = 2\n[sampler]\nchains = "4"\n'
    )
    with pytest.raises(JobError, match="chains must be int"):
        load_job(bad)
    bad.write_text(bad.read_text().replace('chains = "4"', 'init = "map"'))
    with pytest.raises(JobError, match="init must be"):
        load_job(bad)


def test_cli_batch_template_and_errors(tmp_path, capsys):
    from bayes_nlme._cli import main

    assert main(["batch", "--template"]) == 0
    text = capsys.readouterr().out
    import tomllib

    spec = tomllib.loads(text)
    assert spec["simulate"]["n_datasets"] == 100
    assert main(["batch", str(tmp_path / "missing.toml")]) == 2
    assert "does not exist" in " ".join(capsys.readouterr().err.split())
