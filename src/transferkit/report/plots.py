"""Plots a person reads (matplotlib, headless): learning curves, confusion matrix, comparison with error bars,
per-method bars, label-efficiency curves, a hyper-parameter search's history."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator, NullLocator  # noqa: E402

from transferkit import atomic  # noqa: E402


def _save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic.write_bytes(Path(path), buf.getvalue())
    return Path(path)


def plot_learning_curves(history: Sequence[dict[str, float]], path: Path, title: str = "") -> Path:
    """Loss and accuracy per epoch, training vs validation."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4))
    epochs = [int(r["epoch"]) + 1 for r in history]
    for key, ax in (("loss", ax_loss), ("acc", ax_acc)):
        for split, style in (("train", "-o"), ("val", "-s")):
            ys = [r.get(f"{split}_{key}", np.nan) for r in history]
            if not np.all(np.isnan(ys)):
                ax.plot(epochs, ys, style, ms=3, label=split)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("accuracy" if key == "acc" else "cross-entropy")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title or "learning curves")
    return _save(fig, path)


def plot_step_losses(losses: Sequence[float], path: Path, title: str = "", ylabel: str = "loss") -> Path:
    """A loss per optimisation step (raw and a moving average), for loops without epochs (contrastive pairs)."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, alpha=0.35, lw=1, label="per step")
    w = max(1, len(losses) // 20)
    if w > 1:
        smooth = np.convolve(np.asarray(losses, dtype=float), np.ones(w) / w, mode="valid")
        ax.plot(steps[w - 1:], smooth, lw=2, label=f"mean of {w} steps")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.suptitle(title or "training loss")
    return _save(fig, path)


def plot_confusion(matrix: Sequence[Sequence[int]], classes: Sequence[str], path: Path, title: str = "") -> Path:
    """Confusion matrix, rows = true class, columns = predicted, row-normalised colours with counts."""
    cm = np.asarray(matrix, dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * n, 0.8 + 0.5 * n))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.6 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix")
    return _save(fig, path)


def plot_comparison(
    groups: Sequence[str], series: dict[str, tuple[Sequence[float], Sequence[float]]], path: Path,
    ylabel: str = "test accuracy", title: str = "", chance: float | None = None,
) -> Path:
    """Grouped bars with ±1 std error bars: ``series[name] = (means per group, stds per group)``;
    ``chance`` draws the chance level as a dashed line."""
    x = np.arange(len(groups))
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(groups) + 2), 3.8))
    for i, (name, (means, stds)) in enumerate(series.items()):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, means, width, yerr=stds, capsize=3, label=name)
    if chance is not None:
        ax.axhline(chance, color="grey", ls="--", lw=1, label="chance")
    ax.set_xticks(x, groups)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncols=min(len(series), 4))
    ax.set_title(title)
    return _save(fig, path)


_BAR_KINDS = ("baseline", "reference", "method")


def plot_method_bars(rows: Sequence[dict], path: Path, title: str = "", reference_line: float | None = None) -> Path:
    """One bar per method: mean target accuracy with ±1 std error bars and the value written above each bar.

    ``rows[i] = {"label": str, "mean": float, "std": float, "kind": "baseline" | "reference" | "method"}`` (kind
    defaults to ``"method"``): baselines are grey; references — upper bounds that use what adaptation may not, such
    as a model trained on labelled target data — are hatched and their tick reads "(reference)"; methods are
    coloured. ``reference_line`` draws a dashed horizontal line, e.g. at the source-only accuracy."""
    if not rows:
        raise ValueError("method bars: no rows to plot")
    kinds = [r.get("kind", "method") for r in rows]
    bad = sorted({k for k in kinds if k not in _BAR_KINDS})
    if bad:
        raise ValueError(f"method bars: unknown kind(s) {bad}; valid: {', '.join(_BAR_KINDS)}")
    means = np.asarray([float(r["mean"]) for r in rows])
    stds = np.nan_to_num(np.asarray([float(r.get("std", 0.0)) for r in rows]))  # one seed: std is NaN or 0
    labels = [str(r["label"]) + ("\n(reference)" if k == "reference" else "") for r, k in zip(rows, kinds, strict=True)]
    palette = plt.get_cmap("tab10").colors
    colours, n_methods = [], 0
    for k in kinds:
        if k == "method":
            colours.append(palette[n_methods % len(palette)])
            n_methods += 1
        else:
            colours.append("0.6" if k == "baseline" else "white")
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(4.5, 0.9 * len(rows) + 1.5), 3.8))
    bars = ax.bar(x, means, 0.7, yerr=stds, capsize=3, color=colours, edgecolor="0.25", lw=0.8)
    for bar, k in zip(bars, kinds, strict=True):
        if k == "reference":
            bar.set_hatch("//")
    for xi, m, s in zip(x, means, stds, strict=True):
        ax.text(xi, m + s + 0.01, f"{m:.3f}", ha="center", va="bottom", fontsize=8)
    if reference_line is not None:
        ax.axhline(reference_line, color="0.3", ls="--", lw=1, label=f"reference level {reference_line:.3f}")
        ax.legend(fontsize=8, loc="best")
    ax.set_xticks(x, labels, rotation=30 if len(rows) > 4 else 0, ha="right" if len(rows) > 4 else "center")
    ax.set_ylabel("target accuracy")
    ax.set_ylim(0, max(1.0, float(np.max(means + stds)) + 0.08))
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.set_title(title)
    return _save(fig, path)


def plot_curve(
    xs: Sequence[float], tick_labels: Sequence[str], series: dict[str, tuple[Sequence[float], Sequence[float]]],
    path: Path, ylabel: str = "test accuracy", xlabel: str = "labelled training examples per class",
    title: str = "", chance: float | None = None,
) -> Path:
    """Label-efficiency curves: one line per ``series[name] = (means, stds)`` over ``xs`` on a log x axis,
    ±1 std error bars, ticks at exactly ``xs`` named ``tick_labels`` (so "all" can sit at the right end);
    ``chance`` draws the chance level as a dashed line. NaN means (missing cells) leave a gap."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, (means, stds) in series.items():
        ax.errorbar(xs, means, yerr=stds, marker="o", ms=4, capsize=3, lw=1.5, label=name)
    if chance is not None:
        ax.axhline(chance, color="grey", ls="--", lw=1, label="chance")
    ax.set_xscale("log")
    ax.set_xticks(list(xs), list(tick_labels))
    ax.xaxis.set_minor_locator(NullLocator())
    if len(xs) > 1:
        lo, hi = min(xs), max(xs)
        ax.set_xlim(lo / 1.3, hi * 1.3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    if len(series) > 5:  # many variants: the legend goes beside the axes, not over the lines
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.legend(fontsize=8)
    ax.set_title(title)
    return _save(fig, path)


def plot_lr_find(lrs: Sequence[float], losses: Sequence[float], suggestion: float | None, path: Path,
                 title: str = "") -> Path:
    """Training loss against learning rate (log scale) from a range test, with the suggested rate marked."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(lrs, losses, "-", lw=1.5)
    if suggestion is not None and lrs:
        i = int(np.argmin(np.abs(np.log(np.asarray(lrs)) - np.log(suggestion))))
        ax.plot([lrs[i]], [losses[i]], "o", color="tab:red", label=f"suggestion {suggestion:.2g}")
        ax.legend()
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss (smoothed)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_embedding(source: np.ndarray, target: np.ndarray,
                   source_labels: np.ndarray | None, target_labels: np.ndarray | None, path: str | Path,
                   title: str = "", max_per_domain: int = 500, seed: int = 0) -> Path:
    """t-SNE (van der Maaten & Hinton, 2008; scikit-learn) of source and target features, e.g. before and after
    domain adaptation, on a seeded subsample of ``max_per_domain`` each; two panels: by domain and by class
    (target labels, when given, are for this picture only — never for training or selection)."""
    from sklearn.manifold import TSNE

    s, t = np.asarray(source), np.asarray(target)
    if s.ndim != 2 or t.ndim != 2 or s.shape[1] != t.shape[1]:
        raise ValueError(f"embedding plot: needs two (N, D) feature matrices of the same width, got {s.shape} and "
                         f"{t.shape}")
    rng = np.random.default_rng(seed)
    i_s = rng.choice(len(s), min(len(s), max_per_domain), replace=False)
    i_t = rng.choice(len(t), min(len(t), max_per_domain), replace=False)
    x = np.concatenate([s[i_s], t[i_t]]).astype(np.float32)
    emb = TSNE(n_components=2, init="pca", random_state=seed, perplexity=min(30.0, (len(x) - 1) / 3)).fit_transform(x)
    e_s, e_t = emb[: len(i_s)], emb[len(i_s):]
    fig, (ax_d, ax_c) = plt.subplots(1, 2, figsize=(9, 4))
    ax_d.scatter(*e_s.T, s=5, alpha=0.6, label="source")
    ax_d.scatter(*e_t.T, s=5, alpha=0.6, label="target")
    ax_d.legend(markerscale=3)
    ax_d.set_title("by domain", fontsize=9)
    for emb_part, labels, marker in ((e_s, source_labels, "o"), (e_t, target_labels, "x")):
        if labels is not None:
            idx = i_s if emb_part is e_s else i_t
            ax_c.scatter(*emb_part.T, c=np.asarray(labels)[idx], cmap="tab10", s=6, marker=marker, alpha=0.7)
    ax_c.set_title("by class (o source, x target)", fontsize=9)
    for ax in (ax_d, ax_c):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    return _save(fig, Path(path))


def plot_score_vs_accuracy(names: Sequence[str], accuracies: Sequence[float],
                           scores: dict[str, Sequence[float | None]], correlations: dict[str, dict], path: Path,
                           title: str = "", accuracy_label: str = "fine-tuned test accuracy") -> Path:
    """Transferability score against fine-tuned accuracy, one panel per score, one labelled point per candidate.

    ``scores[name][i]`` is candidate ``names[i]``'s value (``None``: not available, left out of that panel);
    ``correlations[name]`` holds ``kendall_tau`` and ``pearson_r`` (``None`` → "n/a"), written on the panel."""
    if not scores:
        raise ValueError("score vs accuracy plot: no scores to plot")
    if len(names) != len(accuracies) or any(len(v) != len(names) for v in scores.values()):
        raise ValueError(f"score vs accuracy plot: {len(names)} names, {len(accuracies)} accuracies and score lists "
                         f"of lengths {[len(v) for v in scores.values()]} must match")
    n = len(scores)
    cols = min(n, 2)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.8 * rows), squeeze=False)
    for ax, (score, values) in zip(axes.flat, scores.items(), strict=False):
        pts = [(v, a, lab) for v, a, lab in zip(values, accuracies, names, strict=True) if v is not None]
        if pts:
            xs, ys, labels = zip(*pts, strict=True)
            ax.scatter(xs, ys, s=30, color="tab:blue", zorder=3)
            for x, y, lab in zip(xs, ys, labels, strict=True):
                ax.annotate(str(lab), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        else:
            ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes, color="0.4")
        corr = correlations.get(score, {})

        def fmt(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.3f}"

        ax.text(0.02, 0.98, f"Kendall τ = {fmt(corr.get('kendall_tau'))} / Pearson r = {fmt(corr.get('pearson_r'))}",
                transform=ax.transAxes, ha="left", va="top", fontsize=8,
                bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8, "edgecolor": "0.7"})
        ax.set_xlabel(score)
        ax.set_ylabel(accuracy_label)
        ax.grid(alpha=0.3)
        ax.margins(x=0.15, y=0.2)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(title or "transferability score vs fine-tuned accuracy", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_optimisation_history(trials: Sequence[dict], path: Path, metric: str = "validation accuracy",
                              maximise: bool = True, title: str = "") -> Path:
    """A hyper-parameter search's history: each finished trial's value by trial number (dots), the best value so
    far (a step line), pruned trials at the last value they reported (grey crosses) and failed trials as red
    ticks on the x axis.

    ``trials[i] = {"number": int, "state": "COMPLETE" | "PRUNED" | "FAIL" | …, "value": float | None}``.
    ``maximise`` says which way "best" goes."""
    done = sorted((int(t["number"]), float(t["value"])) for t in trials
                  if t.get("state") == "COMPLETE" and t.get("value") is not None and np.isfinite(t["value"]))
    pruned = [(int(t["number"]), float(t["value"])) for t in trials
              if t.get("state") == "PRUNED" and t.get("value") is not None and np.isfinite(t["value"])]
    failed = [int(t["number"]) for t in trials if t.get("state") == "FAIL"]
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    if done:
        xs, ys = zip(*done, strict=True)
        ax.plot(xs, ys, "o", ms=5, color="tab:blue", label="trial", zorder=3)
        best = np.maximum.accumulate(ys) if maximise else np.minimum.accumulate(ys)
        ax.step(xs, best, where="post", color="tab:red", lw=1.5, label="best so far", zorder=2)
    if pruned:
        xs, ys = zip(*pruned, strict=True)
        ax.plot(xs, ys, "x", ms=6, color="0.45", label="pruned (last reported value)", zorder=3)
    if failed:
        ax.plot(failed, [0.0] * len(failed), "|", ms=12, mew=1.5, color="tab:red", label="failed",
                transform=ax.get_xaxis_transform(), clip_on=False)
    if not (done or pruned or failed):
        ax.text(0.5, 0.5, "no trials yet", ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xlabel("trial")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"{metric} ({'higher' if maximise else 'lower'} is better)")
    ax.grid(alpha=0.3)
    if done or pruned or failed:
        ax.legend(fontsize=8)
    ax.set_title(title or "optimisation history")
    return _save(fig, path)
