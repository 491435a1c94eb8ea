"""``transferkit select`` through the command line (digits, random-init candidates: no training needed), and
rerun from its config.yaml."""

import json

from transferkit.cli.main import main


def test_select_cli_writes_the_ranking(tmp_path, single_thread):
    out = tmp_path / "sel"
    assert main(["select", "random:seed_cnn", "random:lenet", str(tmp_path / "missing"), "--data", "digits",
                 "--classes", "5-9", "--labels-per-class", "5", "--scores", "logme,leep", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["scores"] == ["logme", "leep"] and m["ranked_by"] == "logme" and m["scoring_set"]["n"] == 25
    assert [c["rank"] for c in m["candidates"]] == [1, 2] and all(c["scores"]["leep"] is None for c in m["candidates"])
    assert [s["candidate"] for s in m["skipped"]] == [str(tmp_path / "missing")]
    assert (out / "report.md").is_file() and (out / "config.yaml").is_file()
    # the run's config.yaml reruns it (candidates and score list from the file)
    assert main(["select", "--config", str(out / "config.yaml"), "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert [c["scores"] for c in again["candidates"]] == [c["scores"] for c in m["candidates"]]


def test_select_cli_bad_input_exits_2(tmp_path, capsys):
    base = ["select", "random:seed_cnn", "--data", "digits", "--classes", "5-9", "--out", str(tmp_path / "x")]
    assert main([*base, "--scores", "logme,bogus"]) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert "unknown score 'bogus'; valid scores: logme, h_score, h_score_shrunk, leep, nce" in out
    assert main([*base, "--verify", "-1"]) == 2
    assert "--verify: expected a whole number" in " ".join(capsys.readouterr().out.split())
    assert main(["select", "--data", "digits"]) == 2
    assert "CANDIDATE" in capsys.readouterr().out
    assert not (tmp_path / "x").exists()
