"""Metrics (scikit-learn), terminal tables (rich), plots (matplotlib) and Markdown reports."""

from transferkit.report.markdown import comparison_report, markdown_table, run_report
from transferkit.report.metrics import classification_metrics, did_not_learn, majority_rate, mean_std
from transferkit.report.plots import plot_comparison, plot_confusion, plot_learning_curves
from transferkit.report.tables import comparison_table, metrics_table

__all__ = [
    "classification_metrics", "comparison_report", "comparison_table", "did_not_learn", "majority_rate",
    "markdown_table", "mean_std", "metrics_table", "plot_comparison", "plot_confusion", "plot_learning_curves",
    "run_report",
]
