"""The run directory's life: lock, partial directory, resume checks, clean-up after failures."""

from pathlib import Path

import pytest
import yaml

from transferkit.rundir import (
    RunLockedError,
    _try_lock,
    launch_rank,
    lock_path,
    partial_dir,
    recorded_config,
    run_session,
)


def fake_checkpoint(run: Path) -> None:
    from transferkit.engine.checkpoints import AtomicCheckpointIO

    AtomicCheckpointIO().save_checkpoint({"x": 1}, run / "checkpoints" / "resume-000001-e000-s0000002.ckpt")


def test_success_replaces_out_and_drops_resume_checkpoints(tmp_path):
    out = tmp_path / "run"
    with run_session(out, config={"lr": 0.1}) as s:
        assert s.path == partial_dir(out) and s.resume_from is None and not s.worker
        fake_checkpoint(s.path)
        (s.path / "metrics.json").write_text("{}")
    assert (out / "metrics.json").is_file() and not partial_dir(out).exists()
    assert not list((out / "checkpoints").glob("resume-*"))


def test_failure_keeps_a_resumable_partial_and_removes_one_without_checkpoints(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError), run_session(out):
        raise RuntimeError("before training")
    assert not partial_dir(out).exists()
    with pytest.raises(RuntimeError), run_session(out, config={"lr": 0.1}) as s:
        yaml.safe_dump({"lr": 0.1}, (s.path / "config.yaml").open("w"))
        fake_checkpoint(s.path)
        raise RuntimeError("killed in training")
    assert partial_dir(out).exists() and recorded_config(out) == {"lr": 0.1}
    with pytest.raises(ValueError, match="interrupted run .*resume=True .*overwrite=True"), run_session(out):
        pass
    with pytest.raises(ValueError, match=r"options differ .*lr: 0.1 then, 0.2 now"), \
            run_session(out, resume=True, config={"lr": 0.2}):
        pass
    with pytest.raises(ValueError, match="choose one"), run_session(out, resume=True, overwrite=True):
        pass
    with run_session(out, resume=True, config={"lr": 0.1, "progress": False}) as s:
        assert s.resume_from is not None and s.resume_from.name.startswith("resume-000001")
    assert out.is_dir() and not partial_dir(out).exists()


def test_a_held_lock_refuses_and_overwrite_stages_separately(tmp_path):
    out = tmp_path / "run"
    holder = _try_lock(lock_path(out))
    try:
        with pytest.raises(RunLockedError, match="is being written by process"), run_session(out):
            pass
        with run_session(out, overwrite=True) as s:
            assert s.path != partial_dir(out) and s.path.parent == tmp_path
            (s.path / "done").write_text("yes")
        assert (out / "done").read_text() == "yes"
    finally:
        holder.close()


def test_worker_processes_write_only_to_a_scratch_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert launch_rank() == 1
    out = tmp_path / "run"
    with run_session(out) as s:
        assert s.worker and not str(s.path).startswith(str(tmp_path))
        scratch = s.path
    assert not scratch.exists() and not out.exists() and not lock_path(out).exists()
