"""Text through the command line: fewshot, zeroshot, predict --text-column, transfer --max-length."""

from __future__ import annotations

import json

from transferkit.cli.main import main


def test_fewshot_zeroshot_and_predict_commands(topics_dir, tmp_path, capsys, single_thread):
    data = f"text:{topics_dir}"
    assert main(["fewshot", "--data", data, "--method", "setfit", "--labels-per-class", "3", "--iterations", "1",
                 "--max-length", "32", "--out", str(tmp_path / "sf"), "--no-progress"]) == 0
    m = json.loads((tmp_path / "sf" / "metrics.json").read_text())
    assert m["method"] == "setfit" and m["n_train"] == 12 and m["details"]["pairs"] == 24
    assert main(["fewshot", "--data", data, "--method", "episodes", "--labels-per-class", "1", "--n-way", "2",
                 "--n-query", "2", "--episodes", "100", "--out", str(tmp_path / "ep")]) == 0
    assert "100 episodes, 2-way 1-shot: accuracy" in capsys.readouterr().out
    desc = tmp_path / "desc.yaml"
    desc.write_text("weather: rain, snow, storms and temperatures\n", encoding="utf-8")
    assert main(["zeroshot", "--data", data, "--template", "News about {label}.", "--template", "{label}",
                 "--descriptions", str(desc), "--out", str(tmp_path / "zs")]) == 0
    z = json.loads((tmp_path / "zs" / "metrics.json").read_text())
    assert z["prompts"][0] == ["News about business.", "business"] and z["prompts"][3][0].startswith("rain")
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"body": "The striker scored in the final."}\n{"body": ""}\n', encoding="utf-8")
    assert main(["predict", str(tmp_path / "zs"), str(inputs), "--text-column", "body", "--output",
                 str(tmp_path / "pred.csv")]) == 0
    out = capsys.readouterr().out
    assert "1 input(s) predicted, 1 error(s)" in out
    assert "sports" in (tmp_path / "pred.csv").read_text()


def test_cli_bad_input_is_a_clear_message(topics_dir, tmp_path, capsys):
    data = f"text:{topics_dir}"
    assert main(["zeroshot", "--data", data, "--labels", "sports,business", "--out", str(tmp_path / "z")]) != 0
    err = " ".join(capsys.readouterr().out.split())
    assert "are not among the zero-shot labels" in err and "science" in err
    assert main(["fewshot", "--data", data, "--method", "knn", "--out", str(tmp_path / "f")]) != 0
    assert "valid few-shot methods: prototypes, setfit, episodes" in " ".join(capsys.readouterr().out.split())
    assert main(["transfer", "--source", "minilm", "--data", data, "--strategy", "linear_probe", "--max-length",
                 "5000", "--epochs", "1", "--out", str(tmp_path / "t"), "--no-progress"]) != 0
    assert "max_length must lie in [2, 512]" in " ".join(capsys.readouterr().out.split())
    assert not (tmp_path / "t").exists()
