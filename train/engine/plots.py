"""PNG plots of training runs and evaluations (matplotlib, non-interactive Agg backend)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (imported late: slow, and only plotting needs it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path, plt: Any) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_training_curves(history: list[dict[str, Any]], path: Path) -> Path | None:
    if not history:
        return None
    plt = _pyplot()

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax_loss.plot(epochs, [h["loss"] for h in history], marker="o")
    ax_loss.set(title="train loss", xlabel="epoch")
    ax_acc.plot(epochs, [h["val_top1"] for h in history], marker="o", color="tab:green")
    ax_acc.set(title="val top-1", xlabel="epoch", ylim=(0, 1.02))
    return _save(fig, path, plt)


def plot_confusion_matrix(confusion: np.ndarray, labels: list[str], path: Path,
                          title: str = "confusion") -> Path:
    """Row-normalised confusion matrix (rows: true class, columns: predicted), with counts
    printed in the cells when there are few enough classes to read them."""
    plt = _pyplot()
    totals = confusion.sum(axis=1, keepdims=True)
    rates = np.divide(confusion, totals, out=np.zeros(confusion.shape), where=totals > 0)
    size = min(20.0, 2.0 + 0.45 * len(labels))
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, labels, rotation=90, fontsize=8)
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.set(title=title, xlabel="predicted", ylabel="true")
    if len(labels) <= 30:
        for (row, col), count in np.ndenumerate(confusion):
            if count:
                ax.text(col, row, str(count), ha="center", va="center", fontsize=7,
                        color="white" if rates[row, col] > 0.5 else "black")
    return _save(fig, path, plt)
