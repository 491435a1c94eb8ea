import numpy as np

from transferkit.report import (
    classification_metrics,
    comparison_report,
    markdown_table,
    mean_std,
    plot_comparison,
    plot_confusion,
    plot_learning_curves,
)


def test_metrics_on_a_known_example():
    m = classification_metrics(np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 1, 2, 0]), ["a", "b", "c"])
    assert m["accuracy"] == 4 / 6
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["per_class"]["b"] == {"precision": 2 / 3, "recall": 1.0, "support": 2}
    assert abs(m["macro_f1"] - np.mean([0.5, 0.8, 2 / 3])) < 1e-9


def test_mean_std_uses_sample_std():
    assert mean_std([1.0, 3.0]) == (2.0, np.std([1.0, 3.0], ddof=1))
    assert mean_std([5.0]) == (5.0, 0.0)


def test_plots_and_report_are_written(tmp_path):
    hist = [{"epoch": e, "train_loss": 1 / (e + 1), "train_acc": 0.5, "val_loss": 1.0, "val_acc": 0.6}
            for e in range(3)]
    for p in (plot_learning_curves(hist, tmp_path / "lc.png"),
              plot_confusion([[3, 1], [0, 4]], ["x", "y"], tmp_path / "cm.png"),
              plot_comparison(["5", "10"], {"s": ([0.5, 0.6], [0.01, 0.02])}, tmp_path / "cmp.png")):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    comparison_report(tmp_path / "r.md", "T", ["intro"], ["a", "b"], [[1, 2]], ["cmp.png"], ["finding"])
    text = (tmp_path / "r.md").read_text()
    assert "| 1 | 2 |" in text and "- finding" in text and "![cmp](cmp.png)" in text
    assert markdown_table(["x"], [[1]]).splitlines()[1] == "|---|"
