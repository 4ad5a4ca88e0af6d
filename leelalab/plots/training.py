"""Figures of a `leelalab train` run: held-out agreement with the teacher and losses per epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from leelalab.plots.boards import PAPER_STYLE, _pyplot
from leelalab.stats import proportion_ci
from leelalab.training.records import TrainingRun


def training_figure(run: TrainingRun, *, title: str = "", width: float = 7.0) -> Any:
    """Two panels over epochs: held-out top-1 agreement (95% Wilson band) and KL / losses."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    history = run.history
    held = run.held_out_positions
    epochs = [h["epoch"] for h in history]
    top1 = [h["held_out_top1"] for h in history]
    bands = [proportion_ci(round(t * held), held) for t in top1]
    with plt.rc_context(PAPER_STYLE):
        figure, (left, right) = plt.subplots(1, 2, figsize=(width, width * 0.38))
        left.plot(epochs, top1, color="#0072b2", marker="o", markersize=2.5, label="top-1")
        left.fill_between(
            epochs,
            [b.low for b in bands],
            [b.high for b in bands],
            color="#0072b2",
            alpha=0.25,
            linewidth=0,
            label="95% CI",
        )
        left.set_xlabel("epoch")
        left.set_ylabel(f"top-1 agreement with the teacher\n({held:,} held-out positions)")
        left.legend(frameon=False, loc="lower right")
        right.plot(
            epochs, [h["held_out_kl"] for h in history], color="#e69f00", label="held-out KL"
        )
        right.plot(
            epochs,
            [h["train_policy"] for h in history],
            color="#999999",
            linestyle="--",
            label="train policy cross-entropy",
        )
        right.plot(
            epochs, [h["train_value"] for h in history], color="#009e73", label="train W/D/L loss"
        )
        right.set_xlabel("epoch")
        right.set_ylabel("nats")
        for ax in (left, right):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        right.legend(frameon=False)
        config = run.config
        student = config["student"]
        shape = (
            f"{student['layers']} layers x {student['d_model']} x {student['heads']} heads"
            if student["family"] == "transformer"
            else f"{student['blocks']} blocks x {student['filters']} filters"
        )
        teacher = Path(run.teacher or "teacher").name
        figure.suptitle(
            title
            or f"{shape} student of {teacher}: {config['epochs']} epochs x "
            f"{config['steps_per_epoch']} steps x batch {config['batch_size']}",
            fontsize=9,
        )
        figure.tight_layout()
    return figure
