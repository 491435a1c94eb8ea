"""Strategy variant specs and ``curve``: cells, summary, plot, report, and resuming (digits, seed_cnn, 1 epoch)."""

import importlib
import json

import numpy as np
import pytest
import yaml

import transferkit as tk
from transferkit.api import curve
from transferkit.api.variants import parse_variant, parse_variants
from transferkit.options import parse_labels_per_class
from transferkit.report.curve import _x_positions
from transferkit.tuning.grid_plan import cell_filename

# the module where every cell (of a curve or a comparison) calls the engine's ``train``
grid_mod = importlib.import_module("transferkit.api.grid")
TASK = dict(data="digits", classes="5-7", epochs=1)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    out = tmp_path_factory.mktemp("curve") / "src"
    return tk.pretrain(data="digits", classes="0-4", backbone="seed_cnn", epochs=1, seed=0, out=out, progress=False)


@pytest.fixture
def train_calls(monkeypatch):
    """Every call curve makes to the engine's ``train``, as (variant strategy name, seed)."""
    calls = []
    real = grid_mod.train

    def counting(strategy, *args, **kwargs):
        calls.append((strategy.name, args[4].seed))
        return real(strategy, *args, **kwargs)

    monkeypatch.setattr(grid_mod, "train", counting)
    return calls


# --- variant specs ---------------------------------------------------------------------------------------------

def test_variant_grammar_and_default_labels():
    assert parse_variant("finetune") == ("finetune", "finetune", {})
    label, name, opts = parse_variant("l2sp=finetune:regularizer=l2sp:reg_alpha=0.01")
    assert (label, name, opts) == ("l2sp", "finetune", {"regularizer": "l2sp", "reg_alpha": 0.01})
    assert isinstance(opts["reg_alpha"], float)  # YAML scalars, not strings
    assert parse_variant("finetune:bn=frozen").label == "finetune[bn=frozen]"
    assert parse_variant("finetune:lr_decay=0.5:bn=frozen").label == "finetune[lr_decay=0.5,bn=frozen]"
    assert parse_variant("feature").label == "feature"  # an alias keeps the name it was given
    # a value may itself contain ':' (segments without '=' continue the previous value)
    assert parse_variant("finetune:freeze_pattern=stages.0:stages.1").options == {"freeze_pattern": "stages.0:stages.1"}
    assert parse_variant({"label": "frozen_bn", "strategy": "finetune", "options": {"bn": "frozen"}}) == \
        ("frozen_bn", "finetune", {"bn": "frozen"})
    assert parse_variant({"strategy": "finetune", "options": {"bn": "frozen"}}).label == "finetune[bn=frozen]"


def test_variant_errors_name_the_spec_and_the_valid_choices():
    with pytest.raises(ValueError, match=r"finetune:bogus=1.*valid options: freeze, freeze_pattern, bn"):
        parse_variant("finetune:bogus=1")
    with pytest.raises(ValueError, match="valid strategies: .*linear_probe"):
        parse_variant("nope")
    with pytest.raises(ValueError, match="not KEY=VALUE"):
        parse_variant("finetune:frozen")
    with pytest.raises(ValueError, match="empty label"):
        parse_variant("=finetune")
    with pytest.raises(ValueError, match="unknown key"):
        parse_variant({"strategy": "finetune", "opts": {}})
    with pytest.raises(ValueError, match="bn='melted'"):
        parse_variant("finetune:bn=melted")


def test_duplicate_labels_are_an_error():
    assert [v.label for v in parse_variants(["finetune", "finetune:bn=frozen", "a=finetune"])] == \
        ["finetune", "finetune[bn=frozen]", "a"]
    with pytest.raises(ValueError, match="duplicate label 'finetune'"):
        parse_variants(["finetune", "linear_probe", "finetune"])
    with pytest.raises(ValueError, match="duplicate label 'x'"):
        parse_variants(["x=finetune", "x=linear_probe"])


def test_compare_accepts_variant_specs(source, tmp_path):
    res = tk.compare(source.run_dir, "digits", "5-7", strategies=("lp=linear_probe",), labels_per_class=(2,),
                     seeds=(0,), out=tmp_path / "cmp", epochs=1)
    assert [c["strategy"] for c in res.metrics["cells"]] == ["lp"]


# --- curve -----------------------------------------------------------------------------------------------------

def test_labels_per_class_parsing_and_cell_names():
    assert parse_labels_per_class("10,1,all,5") == [1, 5, 10, None]
    assert parse_labels_per_class([None, 5]) == [5, None] and parse_labels_per_class(3) == [3]
    for bad, msg in (("0", "at least 1"), ("x", "neither a number"), ("5,5", "twice"), ("", "at least one budget")):
        with pytest.raises(ValueError, match=msg):
            parse_labels_per_class(bad)
    names = {cell_filename(label, None, 0) for label in ("a/b", "a:b", "a b", "finetune[bn=frozen]")}
    assert len(names) == 4 and all("/" not in n and ":" not in n and " " not in n for n in names)
    assert cell_filename("x", 5, 2).endswith("__k5__seed2.json")


def test_all_sits_at_its_training_size_right_of_the_largest_budget():
    rows = [{"labels_per_class": None, "train_per_class": 130.0}]
    assert _x_positions(rows, [2, 10, None]) == ([2.0, 10.0, 130.0], ["2", "10", "all\n(≈130)"])
    assert _x_positions(rows, [200, None])[0] == [200.0, 400.0]  # would sit left of 200: put it at 2×


def test_bad_train_options_fail_before_anything_loads(tmp_path):
    with pytest.raises(ValueError, match=r"seed: expected unset in curve: every cell takes its seed from seeds"):
        curve("no-such-source", out=tmp_path / "c", seed=1)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['bogus'\]; valid: .*schedule"):
        curve("no-such-source", out=tmp_path / "c", bogus=1)
    with pytest.raises(ValueError, match=r"labels_per_class: .*got 500; needs 500 .*\(K is the whole budget\).* has "
                                         "1[0-9][0-9];"):
        curve(tk.create_backbone("seed_cnn", num_classes=3, in_chans=1), data="digits", classes="5-7",
              labels_per_class=(2, 500), out=tmp_path / "c")
    with pytest.raises(ValueError, match="labels_per_class: .*got 100; needs 200 .*100 for validation.* has 1[0-9]+;"):
        curve(tk.create_backbone("seed_cnn", num_classes=3, in_chans=1), data="digits", classes="5-7",
              labels_per_class=(2, 100), val_per_class=100, out=tmp_path / "c")


def test_curve_writes_cells_summary_plot_report_and_resumes_only_missing_cells(source, tmp_path, train_calls):
    out = tmp_path / "curve"
    kw = dict(strategies=("scratch", "linear_probe"), labels_per_class=(2, "all"), seeds=(0, 1), out=out,
              schedule="cosine", **TASK)
    res = curve(source.run_dir, **kw)
    assert len(train_calls) == 8 and res.metrics["computed"] == 8 and res.metrics["reused"] == 0
    cells = res.metrics["cells"]
    assert len(list((out / "cells").glob("*.json"))) == 8
    for name in ("metrics.json", "curve.png", "report.md", "config.yaml", "curve.json"):
        assert (out / name).is_file()
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # paired design: both strategies saw the same labelled images at each (budget, seed)
    assert {c["n_train"] for c in cells if c["labels_per_class"] == 2} == {6}
    n_all = {c["n_train"] for c in cells if c["labels_per_class"] is None}
    assert len(n_all) == 1 and n_all.pop() > 100
    for c in cells:
        assert 0 <= c["accuracy"] <= 1 and c["wall_time_s"] >= c["train_time_s"] > 0
        assert c["epochs_run"] == (0 if c["strategy"] == "linear_probe" else 1)  # a solved probe takes no epochs
        assert {"macro_f1", "val_accuracy", "best_epoch", "trainable_params"} <= set(c)
    # the summary is mean ± sample std over seeds of exactly those cells
    for row in res.metrics["summary"]:
        acc = [c["accuracy"] for c in cells
               if c["strategy"] == row["strategy"] and c["labels_per_class"] == row["labels_per_class"]]
        assert row["seeds"] == 2
        assert row["accuracy_mean"] == pytest.approx(np.mean(acc))
        assert row["accuracy_std"] == pytest.approx(np.std(acc, ddof=1))
    assert [(r["strategy"], r["labels_per_class"]) for r in res.metrics["summary"]] == \
        [("scratch", 2), ("scratch", None), ("linear_probe", 2), ("linear_probe", None)]
    report = (out / "report.md").read_text()
    assert "| linear_probe | all |" in report and " ± " in report and "![curve](curve.png)" in report
    assert any("linear_probe" in f and "scratch" in f for f in res.metrics["findings"])
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["summary"] == json.loads(json.dumps(res.metrics["summary"]))

    # resume: delete one cell → exactly that one is recomputed, the other seven are read back unchanged
    (out / "cells" / cell_filename("linear_probe", 2, 1)).unlink()
    train_calls.clear()
    again = curve(source.run_dir, **kw)
    assert train_calls == [("linear_probe", 1)]
    assert again.metrics["reused"] == 7 and again.metrics["computed"] == 1
    before = {(c["strategy"], c["labels_per_class"], c["seed"]): c for c in cells}
    for c in again.metrics["cells"]:
        if (c["strategy"], c["labels_per_class"], c["seed"]) != ("linear_probe", 2, 1):
            assert c == before[(c["strategy"], c["labels_per_class"], c["seed"])]
    assert "7 reused" in (out / "report.md").read_text()

    # the grid may grow: only the new seed's cells are computed
    train_calls.clear()
    grown = curve(source.run_dir, **{**kw, "labels_per_class": (2,), "seeds": (0, 1, 2)})
    assert sorted(train_calls) == [("linear_probe", 2), ("scratch", 2)]
    assert grown.metrics["cells_outside_grid"] == 4 and len(grown.metrics["cells"]) == 6


def test_interrupted_curve_keeps_finished_cells_and_settings_are_checked_on_resume(source, tmp_path, monkeypatch):
    out = tmp_path / "curve"
    kw = dict(strategies=("lp=linear_probe",), labels_per_class=(2,), seeds=(0, 1, 2), out=out, **TASK)
    real, calls = grid_mod.train, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(grid_mod, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        curve(source.run_dir, **kw)
    assert len(list((out / "cells").glob("*.json"))) == 2 and not (out / "metrics.json").exists()
    assert yaml.safe_load((out / "config.yaml").read_text())["seeds"] == [0, 1, 2]  # written before any cell
    calls.clear()
    monkeypatch.setattr(grid_mod, "train", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    assert curve(source.run_dir, **kw).metrics["reused"] == 2 and len(calls) == 1

    # other settings: refused before training, naming what differs and how to go on
    calls.clear()
    with pytest.raises(ValueError, match=r"other settings \(3 finished cells\).*epochs: 1 then, 2 now.*restart=True"):
        curve(source.run_dir, **{**kw, "epochs": 2})
    with pytest.raises(ValueError, match="training options .*'augment': 'light'"):
        curve(source.run_dir, **{**kw, "augment": "light"})
    with pytest.raises(ValueError, match="label 'lp' was linear_probe .* but is finetune"):
        curve(source.run_dir, **{**kw, "strategies": ("lp=finetune",)})
    assert calls == []
    # a default given explicitly is the same setting
    assert curve(source.run_dir, **{**kw, "optimizer": "adamw"}).metrics["reused"] == 3

    res = curve(source.run_dir, **{**kw, "epochs": 2, "seeds": (0, 1)}, restart=True)
    assert len(calls) == 2 and res.metrics["reused"] == 0
    assert len(list((out / "cells").glob("*.json"))) == 2 and res.metrics["cells_outside_grid"] == 0
    assert all(c["epochs_run"] <= 2 for c in res.metrics["cells"])


def test_head_init_is_opt_in_recorded_per_cell_and_part_of_the_settings(source, tmp_path):
    kw = dict(strategies=("finetune",), labels_per_class=(2,), seeds=(0,), out=tmp_path / "c", data="digits",
              classes="3-5", epochs=1)
    off = curve(source.run_dir, **kw)
    assert off.metrics["cells"][0]["head_init"] is None
    with pytest.raises(ValueError, match="head_init"):  # another setting: resuming would mix cells
        curve(source.run_dir, head_init=True, **kw)
    on = curve(source.run_dir, head_init=True, restart=True, **kw)
    assert on.metrics["cells"][0]["head_init"]["matched"] == {"3": "3", "4": "4"}
    lpft = on.metrics["cells"][0]["head_init"]  # the default LP-FT head (the solved probe) is kept, and it says so
    assert not lpft["applied"] and "LP-FT" in lpft["reason"]
    rand = curve(source.run_dir, head_init=True, restart=True,
                 **{**kw, "strategies": ("finetune:head=random:layer=all",)})  # fc: the source head's features
    assert rand.metrics["cells"][0]["head_init"]["applied"]  # a random head starts from the source's rows
