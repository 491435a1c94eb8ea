"""``transferkit auto`` through the command line: options reach the search (a tiny real run on scikit-learn's
bundled digits with a random-init candidate), and bad options exit 2 with the option named."""

import json

import yaml

from transferkit.cli.main import main


def test_auto_cli_runs_a_small_search_with_its_options(tmp_path, single_thread):
    out = tmp_path / "auto"
    assert main(["auto", "--data", "digits", "--classes", "0-4", "--labels-per-class", "10",
                 "--candidates", "random:seed_cnn", "--budget", "25s", "--first-steps", "4", "--finalists", "1",
                 "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    # 50 labelled images, 40 of them the inner split's fit part: at batch 32, 2 steps per epoch, so --first-steps 4
    # gives 2 epochs
    assert m["first_rung"] == {"epochs": 2, "steps_per_epoch": 2, "batch_size": 32, "n_train": 40,
                               "from": "first_steps=4", "eta": 3}
    assert all(c["rungs"][0]["epochs"] == 2 for c in m["configs"] if c["rungs"])
    assert m["wall_s"] <= 25 * 1.25 and m["test"]["n"] > 0 and (out / "bundle" / "model.safetensors").is_file()
    assert yaml.safe_load((out / "config.yaml").read_text())["first_steps"] == 4


def test_auto_cli_bad_options_exit_2(tmp_path, capsys):
    base = ["auto", "--data", "digits", "--candidates", "random:seed_cnn", "--out", str(tmp_path / "x")]
    assert main([*base, "--budget", "10 minutes"]) == 2
    said = " ".join(capsys.readouterr().out.split())
    assert "--budget: expected a duration such as 90s, 10m or 1.5h, got '10 minutes'" in said
    assert main([*base, "--first-steps", "0"]) == 2
    assert "--first-steps: expected a whole number ≥ 1, got 0" in " ".join(capsys.readouterr().out.split())
    assert main([*base, "--first-epochs", "1"]) == 2
    assert "--first-epochs: expected a whole number ≥ 2" in " ".join(capsys.readouterr().out.split())
    assert main([*base, "--labels-per-class", "5", "--val-per-class", "0"]) == 2
    assert "--val-per-class: expected ≥ 1, got 0; auto chooses" in " ".join(capsys.readouterr().out.split())
    assert not (tmp_path / "x").exists()
