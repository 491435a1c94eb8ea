"""``transferkit.resume`` takes its own options once (``ResumeConfig``: ``out``, ``progress``); every other keyword
overrides the interrupted run's option of that name."""

import inspect

import pytest
import yaml

import transferkit as tk
from transferkit.api import resume_job
from transferkit.errors import ConfigError
from transferkit.options import ResumeConfig


def test_resume_signature_and_refusals(tmp_path):
    assert list(inspect.signature(tk.resume).parameters) == ["args", "config", "console", "options"]
    with pytest.raises(ConfigError, match="out"):
        tk.resume()
    with pytest.raises(TypeError, match="not both"):
        tk.resume(tmp_path, config=ResumeConfig(out=str(tmp_path)))
    with pytest.raises(ValueError, match="resume"):
        tk.resume(tmp_path / "nothing")


def test_resume_reads_the_recorded_options_and_applies_overrides(tmp_path, monkeypatch):
    out = tmp_path / "run"
    partial = tmp_path / ".run.partial"
    partial.mkdir()
    (partial / "config.yaml").write_text(yaml.safe_dump({"command": "transfer", "source": "s", "data": "d",
                                                         "devices": 2, "lr": 0.5}))
    calls = []
    monkeypatch.setitem(resume_job.RESUMABLE, "transfer", lambda **kw: calls.append(kw))
    tk.resume(out, devices=1, progress=False)
    (called,) = calls
    assert called["devices"] == 1 and called["lr"] == 0.5 and called["source"] == "s"  # override wins, rest kept
    assert (called["out"], called["resume"], called["overwrite"], called["progress"]) == (str(out), True, False, False)
    tk.resume(config=ResumeConfig(out=str(out)), devices=2)  # a configuration and overrides together
    assert calls[-1]["devices"] == 2 and calls[-1]["progress"] is True
