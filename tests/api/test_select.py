"""The select job on scikit-learn digits: ranking, skipped candidates, the scoring set, caching, verification by
fine-tuning (correlations, plot, times) and bad input. Tiny candidates: two 2-epoch source runs and random inits."""

import json
import math

import pytest
import yaml

import transferkit as tk
from transferkit import api
from transferkit.data.job_task import load_task
from transferkit.data.splits import labelled_budget_split
from transferkit.report.plots import plot_score_vs_accuracy

SCORES = ["logme", "h_score", "h_score_shrunk", "leep", "nce"]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("select-src")
    for name, backbone in (("cnn", "seed_cnn"), ("lenet", "lenet")):
        tk.pretrain(data="digits", classes="0-4", backbone=backbone, epochs=2, seed=0, out=root / name,
                    progress=False)
    return root


def _candidates(root):
    return [str(root / "cnn"), str(root / "lenet" / "bundle"), "random:seed_cnn", str(root / "missing"),
            "random:no_such_arch"]


def test_select_ranks_usable_candidates_and_lists_skipped_ones(sources, tmp_path, single_thread):
    res = api.select(_candidates(sources), data="digits", classes="5-9", labels_per_class=10, out=tmp_path / "sel")
    m = json.loads((tmp_path / "sel" / "metrics.json").read_text())
    assert res.metrics["selected"] == m["selected"] == m["candidates"][0]["candidate"]
    assert [c["name"] for c in m["candidates"]] and {c["name"] for c in m["candidates"]} == \
        {"cnn", "lenet", "random:seed_cnn"}
    logme = [c["scores"]["logme"] for c in m["candidates"]]
    assert logme == sorted(logme, reverse=True) and [c["rank"] for c in m["candidates"]] == [1, 2, 3]
    by_name = {c["name"]: c for c in m["candidates"]}
    for name in ("cnn", "lenet"):
        assert all(math.isfinite(by_name[name]["scores"][s]) for s in SCORES), name
        assert by_name[name]["source_classes"] == 5 and by_name[name]["not_available"] == {}
    rnd = by_name["random:seed_cnn"]
    assert rnd["scores"]["leep"] is None and rnd["scores"]["nce"] is None and "no source head" in \
        rnd["not_available"]["leep"] and math.isfinite(rnd["scores"]["logme"]) and rnd["ranks"]["leep"] is None
    assert 0 < by_name["cnn"]["scores"]["h_score"] <= 4 + 1e-9  # at most C - 1
    skipped = {s["candidate"]: s["reason"] for s in m["skipped"]}
    assert set(skipped) == {str(sources / "missing"), "random:no_such_arch"}
    assert "no such bundle" in skipped[str(sources / "missing")] and "valid backbones" in skipped["random:no_such_arch"]
    for c in m["candidates"]:
        assert c["time"]["features_s"] > 0 and c["time"]["scores_s"] > 0 and c["time"]["total_s"] > 0
        assert c["verification"] is None
    assert m["scoring_time_s"] > 0 and m["verification"] is None
    # the scoring set is exactly the labelled training images of transfer(..., labels_per_class=10, seed=0)
    train_set, _ = labelled_budget_split(load_task("digits", "train", "5-9"), 10, None, 0.1, 0)
    assert m["scoring_set"]["n"] == 50 and m["scoring_set"]["fingerprint"] == train_set.fingerprint()
    report = (tmp_path / "sel" / "report.md").read_text()
    assert "Skipped candidates" in report and "random:no_such_arch" in report and "LogME (You et al., 2021)" in report
    assert yaml.safe_load((tmp_path / "sel" / "config.yaml").read_text())["command"] == "select"
    assert not (tmp_path / "sel" / "score_vs_accuracy.png").exists()

    # deterministic: a second selection (features now from the cache) gives the very same scores
    again = api.select(_candidates(sources), data="digits", classes="5-9", labels_per_class=10,
                       out=tmp_path / "again").metrics
    assert [c["name"] for c in again["candidates"]] == [c["name"] for c in m["candidates"]]
    for first, second in zip(m["candidates"], again["candidates"], strict=True):
        assert second["scores"] == {k: (None if v is None else pytest.approx(v, rel=1e-9, abs=1e-12))
                                    for k, v in first["scores"].items()}
    assert all(c["feature_cache"] == "hit" for c in again["candidates"])

    # another first score ranks by it; candidates without it go last, unranked
    leep_first = api.select(_candidates(sources)[:3], data="digits", classes="5-9", labels_per_class=10,
                            scores="leep,logme", out=tmp_path / "leep").metrics
    assert leep_first["ranked_by"] == "leep" and leep_first["candidates"][-1]["name"] == "random:seed_cnn"
    assert leep_first["candidates"][-1]["rank"] is None and list(leep_first["candidates"][0]["scores"]) == \
        ["leep", "logme"]


def test_select_verify_all_correlates_scores_with_fine_tuned_accuracy(sources, tmp_path, single_thread):
    cands = _candidates(sources)[:4]
    api.select(cands, data="digits", classes="5-9", labels_per_class=10, verify_all=True, epochs=2,
               out=tmp_path / "ver")
    m = json.loads((tmp_path / "ver" / "metrics.json").read_text())
    ver = m["verification"]
    assert ver["n"] == 3 and ver["accuracy_split"] == "test" and len(m["skipped"]) == 1
    for c in m["candidates"]:
        v = c["verification"]
        # issue 26: the verification runs train on all K = 10 labels per class, no separate validation set
        assert 0 <= v["accuracy"] <= 1 and v["validation_accuracy"] is None and v["wall_time_s"] > 0
        assert v["labels"]["train_final_model"] == 50 and v["labels"]["selection"].startswith("no selection")
        assert v["strategy"] == ("scratch" if c["candidate"].startswith("random:") else "finetune")
        run = json.loads((tmp_path / "ver" / v["run_dir"] / "metrics.json").read_text())
        assert run["accuracy"] == v["accuracy"] and run["n_train"] == 50
    corr = ver["correlations"]
    assert set(corr) == set(SCORES)
    for name in ("logme", "h_score"):  # three verified candidates: a correlation (or n/a for constant values)
        assert corr[name]["n"] == 3
        for key in ("kendall_tau", "pearson_r"):
            value = corr[name][key]
            assert (value is not None and math.isfinite(value) and -1 <= value <= 1) or "equal" in corr[name]["note"]
    for name in ("leep", "nce"):  # the random init has no source head: two points, no correlation
        assert corr[name]["n"] == 2 and corr[name]["kendall_tau"] is None and "needs ≥ 3" in corr[name]["note"]
    assert isinstance(corr["logme"]["top1_match"], bool)
    assert corr["logme"]["top1_by_score"] == m["candidates"][0]["name"]
    assert ver["finetune_time_s"] > 0 and ver["scoring_time_s"] > 0 and ver["speedup"] > 0
    assert ver["speedup"] == pytest.approx(ver["finetune_time_s"] / ver["scoring_time_s"])
    assert (tmp_path / "ver" / "score_vs_accuracy.png").stat().st_size > 1000
    report = (tmp_path / "ver" / "report.md").read_text()
    assert "Verification by fine-tuning" in report and "**test** accuracy" in report and "Kendall τ" in report
    assert "score_vs_accuracy.png" in report

    # verify=1: only the top candidate by the first score is fine-tuned
    one = api.select(cands[:2], data="digits", classes="5-9", labels_per_class=10, scores=["h_score"], verify=1,
                     epochs=1, out=tmp_path / "one").metrics
    done = [c["name"] for c in one["candidates"] if c.get("verification")]
    assert done == [one["candidates"][0]["name"]] and one["verification"]["correlations"]["h_score"]["n"] == 1
    assert one["verification"]["correlations"]["h_score"]["pearson_r"] is None


def test_an_interrupted_verification_keeps_finished_runs_and_a_rerun_reuses_them(sources, tmp_path, monkeypatch):
    import transferkit.api.train as train_mod

    real, calls = train_mod.transfer, []

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(train_mod, "transfer", interrupted)
    kw = dict(data="digits", classes="5-9", labels_per_class=5, scores=["h_score"], verify=2, epochs=1,
              out=tmp_path / "sel")
    cands = [str(sources / "cnn"), "random:seed_cnn"]
    with pytest.raises(KeyboardInterrupt):
        api.select(cands, **kw)
    work = tmp_path / ".sel.work"
    assert not (tmp_path / "sel").exists() and (work / "config.yaml").is_file()
    assert [p.name for p in work.glob("verify-*.json")] == ["verify-01.json"]
    calls.clear()
    m = api.select(cands, **kw).metrics
    assert len(calls) == 1 and all(c["verification"] for c in m["candidates"])  # only the unfinished run trained
    assert not work.exists() and len(list((tmp_path / "sel" / "verify").iterdir())) == 2


def test_select_bad_input(sources, tmp_path):
    cands = _candidates(sources)
    kw = {"data": "digits", "classes": "5-9", "labels_per_class": 10}
    with pytest.raises(ValueError, match="unknown score.*'bogus'.*valid scores: logme, h_score, h_score_shrunk, leep"):
        api.select(cands, scores="logme,bogus", out=tmp_path / "x", **kw)
    with pytest.raises(ValueError, match="at least one candidate"):
        api.select([], out=tmp_path / "x", **kw)
    with pytest.raises(ValueError, match="verify: expected a whole number"):
        api.select(cands, verify=-1, out=tmp_path / "x", **kw)
    with pytest.raises(ValueError, match="verify: expected at most the 5 candidate.*got 9"):
        api.select(cands, verify=9, out=tmp_path / "x", **kw)
    with pytest.raises(ValueError, match="^verify: expected at most the 3 usable .*got 4; only 3 usable .*missing"):
        api.select(cands, verify=4, out=tmp_path / "x", **kw)
    with pytest.raises(ValueError, match="no candidate could be scored: .*missing.*no_such_arch"):
        api.select(cands[3:], out=tmp_path / "x", **kw)
    with pytest.raises(ValueError, match="given more than once"):
        api.select(["random:seed_cnn", "random:seed_cnn"], out=tmp_path / "x", **kw)
    with pytest.raises(ValueError, match=r"digits/train: 1 class with examples \('5'\).*at least 2 classes"):
        api.select(["random:seed_cnn"], data="digits", classes="5", labels_per_class=5, out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_plot_score_vs_accuracy_leaves_out_missing_values(tmp_path):
    corr = {"logme": {"kendall_tau": 0.5, "pearson_r": 0.9}, "leep": {"kendall_tau": None, "pearson_r": None}}
    path = plot_score_vs_accuracy(["a", "b", "c"], [0.5, 0.7, 0.9], {"logme": [1.0, 2.0, 3.0],
                                                                     "leep": [None, -1.0, None]}, corr,
                                  tmp_path / "p.png")
    assert path.stat().st_size > 1000
    with pytest.raises(ValueError, match="must match"):
        plot_score_vs_accuracy(["a"], [0.5, 0.6], {"logme": [1.0]}, corr, tmp_path / "q.png")


def test_select_image_size_applies_to_named_backbones(sources, tmp_path, single_thread):
    m = api.select([str(sources / "cnn"), "random:mobilenet_v2"], data="digits", classes="5-9", labels_per_class=5,
                   scores="h_score", image_size=32, out=tmp_path / "size").metrics
    by_name = {c["name"]: c for c in m["candidates"]}
    assert by_name["random:mobilenet_v2"]["input"] == [32, 32] and by_name["cnn"]["input"] == [28, 28]
    assert by_name["random:mobilenet_v2"]["kind"] == "random init" and by_name["cnn"]["kind"] == "run/bundle"


def test_select_reports_domain_similarity_to_a_source_dataset(sources, tmp_path, single_thread):
    kw = dict(data="digits", classes="5-9", labels_per_class=10, scores="logme", similarity_data="digits",
              similarity_samples=60)
    near = api.select([str(sources / "cnn")], similarity_classes="5-9", out=tmp_path / "near", **kw).metrics
    far = api.select([str(sources / "cnn")], similarity_classes="0-4", out=tmp_path / "far", **kw).metrics
    s_near, s_far = near["candidates"][0]["similarity"]["values"], far["candidates"][0]["similarity"]["values"]
    for s in (s_near, s_far):
        assert -1 <= s["mean_cosine"] <= 1 and 0 <= s["proxy_a_distance"] <= 2 and math.isfinite(s["mmd2"])
    # the same classes (other images) are closer than other classes, by every measure
    assert s_near["proxy_a_distance"] < s_far["proxy_a_distance"] and s_near["mmd2"] < s_far["mmd2"]
    assert s_near["mean_cosine"] > s_far["mean_cosine"]
    assert near["similarity"]["n"] == 60 and "PAD" in (tmp_path / "near" / "report.md").read_text()
    with pytest.raises(ValueError, match="similarity_samples: expected at least 2"):
        api.select([str(sources / "cnn")], similarity_classes="0-4", out=tmp_path / "x",
                   **{**kw, "similarity_samples": 1})


def test_candidate_without_offline_weights_is_skipped_with_the_reason(sources, tmp_path, monkeypatch):
    from transferkit.backbones import PretrainedWeightsUnavailable
    from transferkit.transferability import select_candidates as select_job  # where load_source is looked up

    real = select_job.load_source

    def offline(source, *args, **kwargs):
        if str(source) == "timm:resnet18":  # what an offline machine answers (no network in tests)
            raise PretrainedWeightsUnavailable("timm:resnet18: pretrained weights are not available offline")
        return real(source, *args, **kwargs)

    monkeypatch.setattr(select_job, "load_source", offline)
    m = api.select([str(sources / "cnn"), "timm:resnet18"], data="digits", classes="5-9", labels_per_class=10,
                   scores="logme", out=tmp_path / "s").metrics
    assert [c["name"] for c in m["candidates"]] == ["cnn"]
    assert m["skipped"] == [{"candidate": "timm:resnet18", "reason": "PretrainedWeightsUnavailable: timm:resnet18: "
                             "pretrained weights are not available offline"}]
