"""A self-contained HTML report of a fit (``bayes-nlme report RUN_DIR``).

The page embeds every figure as a base64 PNG, so it can be mailed or archived as one file.
Sections: run information, parameter estimates, convergence, shrinkage, goodness of fit,
VPC and pcVPC, individual fits.
"""

from __future__ import annotations

import base64
import html
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_report", "RUN_FILE"]

RUN_FILE = "run.json"

_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; border-bottom: 2px solid #345; padding-bottom: .2em; }
h2 { font-size: 1.25em; margin-top: 1.8em; color: #234; }
table { border-collapse: collapse; font-size: .9em; margin: .5em 0; }
th, td { padding: .25em .7em; text-align: right; border-bottom: 1px solid #ddd; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #eef2f6; }
.ok { color: #17692b; font-weight: bold; } .bad { color: #a31515; font-weight: bold; }
img { max-width: 100%; border: 1px solid #eee; margin: .4em 0; }
.note { color: #555; font-size: .9em; }
code { background: #f4f4f4; padding: 0 .25em; }
"""


def _png(fig, path=None) -> str:
    """Embed a figure as a base64 PNG (and also save it to ``path`` when given)."""
    import matplotlib.pyplot as plt

    if path is not None:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="figure" src="data:image/png;base64,{data}">'


def _table(rows: list[list[Any]], header: list[str]) -> str:
    def cell(v):
        if isinstance(v, float | np.floating):
            return "" if np.isnan(v) else f"{v:.4g}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section(title: str, body: str, anchor: str) -> str:
    return f'<section id="{anchor}"><h2>{html.escape(title)}</h2>\n{body}\n</section>'


def _guarded(title: str, anchor: str, build) -> str:
    """Build a section; a failure becomes a visible note instead of aborting the report."""
    try:
        return _section(title, build(), anchor)
    except Exception as e:  # noqa: BLE001 - the report shows what could not be drawn
        msg = html.escape(f"{type(e).__name__}: {e}")
        return _section(title, f'<p class="bad">This section could not be drawn: {msg}</p>', anchor)


def write_report(
    run_dir,
    model,
    data,
    idata,
    *,
    info: dict | None = None,
    n_sim: int = 300,
    plot_labels: dict | None = None,
) -> Path:
    """Write ``RUN_DIR/report.html``: estimates, convergence, GOF, VPC and individual fits.

    The GOF, NPDE, VPC and pcVPC figures are also saved next to it (``gof.png``,
    ``npde.png``, ``vpc.png``, ``pcvpc.png``).

    Parameters
    ----------
    run_dir : str or Path
        Output directory (created if needed).
    model : Model
        The fitted model.
    data : Dataset, DataFrame or path
        The fitted dataset.
    idata : arviz.InferenceData
        The fit; a ``posterior_predictive`` group is added if absent (for CWRES).
    info : dict, optional
        Run information shown at the top (model source, data source, settings).
    n_sim : int, default 300
        Simulated replicates for NPDE and the VPCs.
    plot_labels : dict, optional
        ``dv_label``/``time_label`` for the individual-fit panels.

    Returns
    -------
    Path
        The report's path.
    """
    from .diagnostics import convergence, residuals, shrinkage, summary
    from .infer._fit import as_dataset
    from .plots import plot_individual_fits

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ds = as_dataset(data)
    table = summary(idata)
    conv = convergence(idata)
    res = residuals(model, ds, idata, n_sim=n_sim)
    labels = dict(plot_labels or {})
    parts = []

    info = dict(info or {})
    info.setdefault("model", repr(model))
    info.setdefault("data", repr(ds))
    info["created"] = time.strftime("%Y-%m-%d %H:%M:%S")
    rows = [[k, v] for k, v in info.items()]
    parts.append(_section("Run", _table(rows, ["item", "value"]), "run"))

    rows = [[name, *[r[c] for c in table.columns]] for name, r in table.iterrows()]
    parts.append(
        _section(
            "Parameter estimates",
            _table(rows, ["parameter", *table.columns])
            + '<p class="note">Posterior mean, SD, median and equal-tailed 90% credible '
            "interval; IIV as CV% = 100·sqrt(exp(ω²) − 1); R-hat and ESS from ArviZ.</p>",
            "estimates",
        )
    )

    def conv_section():
        ok = conv["converged"]
        verdict = (
            '<p class="ok">Converged: max R-hat &lt; 1.01, no divergences, ESS ≥ 400.</p>'
            if ok
            else '<p class="bad">Not converged by the usual thresholds (R-hat &lt; 1.01, no '
            "divergences, bulk and tail ESS ≥ 400): do not use these estimates yet.</p>"
        )
        rows = [[k, v] for k, v in conv.items()]
        import matplotlib.pyplot as plt

        from .plots import plot_rank

        fig = plot_rank(idata)
        out = verdict + _table(rows, ["diagnostic", "value"]) + _png(fig)
        plt.close("all")
        return out

    parts.append(_guarded("Convergence", "convergence", conv_section))

    def shrink_section():
        sh = shrinkage(model, idata, res)
        rows = [[k, 100 * v] for k, v in sh.items()]
        return _table(rows, ["random effect", "shrinkage %"]) + (
            '<p class="note">ETA shrinkage 1 − SD(posterior mean ETA) / ω; ε shrinkage '
            "1 − SD(IWRES). Above ~30%, ETA-based diagnostics lose power.</p>"
        )

    parts.append(_guarded("Shrinkage", "shrinkage", shrink_section))

    def gof_section():
        from .plots import plot_gof

        out = _png(plot_gof(res, **labels), run_dir / "gof.png")
        return out + _png(plot_gof(res, kind="npde", **labels), run_dir / "npde.png")

    parts.append(_guarded("Goodness of fit", "gof", gof_section))

    def vpc_section():
        from .infer._predictive import simulate
        from .plots import plot_vpc

        sims = simulate(model, ds, idata, etas="new", n_draws=n_sim, seed=1)
        a = _png(plot_vpc(model, ds, idata, sims=sims, **labels), run_dir / "vpc.png")
        b = _png(plot_vpc(model, ds, idata, sims=sims, pc=True, **labels), run_dir / "pcvpc.png")
        return (
            a
            + b
            + (
                '<p class="note">Observed 5th/50th/95th percentiles (lines) over the 95% '
                "intervals of the same percentiles in simulated replicates with new subjects "
                "(bands); the pcVPC normalises observations and simulations by PRED "
                "(Bergstrand et al. 2011).</p>"
            )
        )

    parts.append(_guarded("Visual predictive checks", "vpc", vpc_section))

    parts.append(
        _guarded(
            "Individual fits",
            "individual",
            lambda: "".join(
                _png(plot_individual_fits(model, ds, idata, output=name, **labels))
                for name in model.output_names()
            ),
        )
    )

    title = f"bayes_nlme report: {html.escape(model.name)}"
    page = (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<h1>{title}</h1>\n"
        + "\n".join(parts)
        + "\n</body>\n</html>\n"
    )
    path = run_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def write_run_info(run_dir, info: dict) -> None:
    """Record how a run was made (``run.json``), so ``bayes-nlme report`` can reload it."""
    Path(run_dir, RUN_FILE).write_text(json.dumps(info, indent=2, default=str), "utf-8")


def read_run_info(run_dir) -> dict:
    """Read ``run.json`` from a run directory."""
    return json.loads(Path(run_dir, RUN_FILE).read_text("utf-8"))
