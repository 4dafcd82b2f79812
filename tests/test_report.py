"""The HTML report: valid, self-contained, with every section drawn; `bayes-nlme report`."""

from html.parser import HTMLParser

import pytest

from bayes_nlme._cli import main

TINY = ["--chains", "2", "--warmup", "60", "--samples", "40", "--no-progress"]
SECTIONS = ["run", "estimates", "convergence", "shrinkage", "gof", "vpc", "individual"]
VOID = {"meta", "img", "br", "hr", "link", "input"}


class _Checker(HTMLParser):
    """Collects section ids and images and checks that tags nest properly."""

    def __init__(self):
        super().__init__()
        self.stack, self.sections, self.images, self.errors = [], [], 0, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs.get("id"))
        if tag == "img":
            self.images += 1
            assert attrs["src"].startswith("data:image/png;base64,")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> (open: {self.stack[-3:]})")
        else:
            self.stack.pop()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["fit", "theophylline", "--out", str(out), *TINY]) == 0
    return out


def _check(path, params=("tvcl", "omega_ka_sd")):
    text = path.read_text("utf-8")
    assert text.startswith("<!DOCTYPE html>")
    checker = _Checker()
    checker.feed(text)
    assert not checker.errors, checker.errors[:3]
    assert not checker.stack, checker.stack
    assert checker.sections == SECTIONS
    assert checker.images == 6  # rank, GOF, NPDE, VPC, pcVPC, individual fits
    assert "could not be drawn" not in text
    assert all(p in text for p in params)
    return text


def test_fit_writes_valid_report(run_dir):
    _check(run_dir / "report.html")
    assert (run_dir / "run.json").exists()
    for name in ("gof.png", "npde.png", "vpc.png", "pcvpc.png"):
        assert (run_dir / name).stat().st_size > 10_000, name


def test_report_command_rewrites_it(run_dir, capsys):
    (run_dir / "report.html").unlink()
    assert main(["report", str(run_dir)]) == 0
    _check(run_dir / "report.html")
    assert "wrote" in capsys.readouterr().err


def test_report_on_a_non_run_directory_exits_2(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_pheno_diagnostics_and_report(tmp_path):
    """The diagnostics run on the second real dataset: sparse data, covariates, proportional
    error, repeated IV doses."""
    out = tmp_path / "pheno"
    assert main(["fit", "pheno", "--out", str(out), *TINY]) == 0
    _check(out / "report.html", params=("tvcl", "apgar_v", "omega_v_sd", "eta_cl"))
