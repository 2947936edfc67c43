"""The evaluation plots, saved as PNG (matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from training.evaluate import calibration_curve_points, smoothed_calibration

SYNTHETIC_NOTE = "trained and tested on SYNTHETIC data"


def _finish(fig: plt.Figure, path: Path, note: str | None) -> Path:
    if note:
        fig.text(0.99, 0.01, note, ha="right", va="bottom", fontsize=7, color="#a00")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def roc_plot(
    y: np.ndarray,
    scores: Mapping[str, np.ndarray],
    aurocs: Mapping[str, str],
    path: Path,
    note=None,
) -> Path:
    """ROC curves of the model and each comparison score on the same rows."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, s in scores.items():
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(
            fpr,
            tpr,
            label=f"{name}  AUROC {aurocs.get(name, '–')}",
            lw=1.6 if name == "pe-risk" else 1,
        )
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax.set(xlabel="1 − specificity", ylabel="sensitivity", title="ROC, test split")
    ax.legend(fontsize=7, loc="lower right")
    return _finish(fig, path, note)


def calibration_plot(y: np.ndarray, p: np.ndarray, path: Path, note=None) -> Path:
    """Decile dots, the loess-smoothed curve and the prediction histogram."""
    fig, (ax, hist) = plt.subplots(
        2, 1, figsize=(5.5, 6), sharex=True, gridspec_kw={"height_ratios": [4, 1]}
    )
    order = np.argsort(p)
    smooth = smoothed_calibration(y, p)
    top = float(np.quantile(p, 0.995)) * 1.1
    ax.plot([0, top], [0, top], color="grey", lw=0.8, ls=":", label="ideal")
    ax.plot(p[order], smooth[order], lw=1.6, label="loess-smoothed")
    dots = calibration_curve_points(y, p)
    ax.scatter(dots["predicted"], dots["observed"], s=18, zorder=3, label="deciles")
    ax.set(ylabel="observed PE rate", title="Calibration, test split", xlim=(0, top), ylim=(0, top))
    ax.legend(fontsize=7, loc="upper left")
    hist.hist(p, bins=60, range=(0, top), color="#777")
    hist.set(xlabel="predicted probability", ylabel="rows")
    return _finish(fig, path, note)


def decision_curve_plot(curve: pd.DataFrame, path: Path, note=None) -> Path:
    """Net benefit across thresholds, with treat-all and treat-none."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for col in curve.columns.drop("threshold"):
        style = {
            "treat_all": {"color": "grey", "ls": "--"},
            "treat_none": {"color": "black", "lw": 0.8},
        }
        ax.plot(curve["threshold"] * 100, curve[col], label=col, **style.get(col, {}))
    top = float(curve.drop(columns="threshold").to_numpy().max())
    ax.set(
        xlabel="threshold probability (%)",
        ylabel="net benefit",
        title="Decision curve, test split",
        ylim=(-0.01, max(top * 1.15, 0.01)),
    )
    ax.legend(fontsize=7)
    return _finish(fig, path, note)


def shap_summary_plot(
    contributions: np.ndarray, x: np.ndarray, names: Sequence[str], path: Path, note=None
) -> Path:
    """SHAP beeswarm of the served (calibrated log-odds) contributions, coloured by the
    feature's value; unknown values are grey. A feature unknown in every plotted row (a lab
    the table never holds for these rows) has no value to colour by: it is handed to shap as
    a column without numbers, which shap draws grey without taking percentiles of an empty
    column (numpy's "All-NaN slice encountered")."""
    import shap

    data = pd.DataFrame(x, columns=list(names))
    unknown = [n for n in data.columns if data[n].isna().all()]
    data = data.astype(dict.fromkeys(unknown, object))
    explanation = shap.Explanation(values=contributions, data=data, feature_names=list(names))
    shap.plots.beeswarm(explanation, max_display=15, show=False)
    fig = plt.gcf()
    fig.axes[0].set_xlabel("contribution to calibrated log-odds of PE")
    fig.set_size_inches(7.5, 6)
    return _finish(fig, path, note)
