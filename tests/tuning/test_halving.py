"""The successive-halving scheduler alone (auto's stage 3), with a fake trial: no training."""

import time

from transferkit.tuning.halving import Config, successive_halving


def _configs(n: int) -> list[Config]:
    return [Config("src", f"c{i}", "finetune", {"i": i}) for i in range(n)]


def _run(scores: dict[str, float], calls: list, fail: str = ""):
    def run(cfg, rung, epochs, final, stage_end):
        calls.append((cfg.label, rung, epochs, final))
        if cfg.label == fail:
            cfg.stopped = "failed: ValueError: not for this source"
            return None
        return {"rung": rung + 1, "epochs": epochs, "epochs_run": epochs - (1 if final else 0),
                "val_accuracy": scores[cfg.label] + 0.01 * rung, "val_loss": 1.0, "train_time_s": 0.01 * epochs,
                "wall_s": 0.01 * epochs + 0.001, "cut_by_deadline": False}
    return run


def test_halving_keeps_the_best_half_and_the_last_one_trains_on():
    configs, calls = _configs(4), []
    scores = {"c0": 0.5, "c1": 0.9, "c2": 0.7, "c3": 0.6}
    successive_halving(configs, 2, 2, lambda: time.monotonic() + 3600, _run(scores, calls), final_patience=10)
    assert calls == [("c0", 0, 2, False), ("c1", 0, 2, False), ("c2", 0, 2, False), ("c3", 0, 2, False),
                     ("c1", 1, 4, False), ("c2", 1, 4, False), ("c1", 2, 8, True)]
    by = {c.label: c for c in configs}
    assert by["c1"].stopped.startswith("last one standing; early stopping after 7 of 8 epochs")
    assert "halved out after rung 1" in by["c0"].stopped and "rank 4 of 4" in by["c0"].stopped
    assert "halved out after rung 2" in by["c2"].stopped and [r["rung"] for r in by["c1"].rungs] == [1, 2, 3]


def test_a_failed_run_is_said_and_the_search_goes_on():
    configs, calls = _configs(3), []
    successive_halving(configs, 1, 3, lambda: time.monotonic() + 3600,
                       _run({"c0": 0.2, "c1": 0.4, "c2": 0.3}, calls, fail="c1"), final_patience=5)
    by = {c.label: c for c in configs}
    assert by["c1"].stopped.startswith("failed: ValueError") and not by["c1"].rungs
    assert by["c2"].stopped.startswith("last one standing") and "halved out" in by["c0"].stopped


def test_no_time_left_stops_every_configuration_with_a_reason():
    configs, calls = _configs(2), []
    successive_halving(configs, 1, 2, lambda: time.monotonic() - 1, _run({"c0": 0.1, "c1": 0.2}, calls),
                       final_patience=5)
    assert calls == [] and all(c.stopped == "budget: stage 3's time was spent" for c in configs)
