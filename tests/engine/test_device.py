"""``accelerator="auto"`` resolved once (a CUDA GPU when visible, else the CPU) and mixed precision."""

import pytest
import torch

import transferkit as tk
from transferkit.config import TrainConfig
from transferkit.engine import device
from transferkit.engine.trainer import build_trainer
from transferkit.errors import ConfigError


def test_auto_is_the_gpu_only_when_cuda_is_visible(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device.resolve_accelerator("auto") == "cpu" and device.resolve_accelerator("cpu") == "cpu"
    with pytest.raises(ConfigError, match="accelerator: expected auto or cpu on this machine"):
        device.resolve_accelerator("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device.resolve_accelerator("auto") == "gpu" and device.resolve_accelerator("cuda") == "gpu"
    assert device.resolve_accelerator("mps") == "mps"  # only by name


def test_an_auto_run_on_the_cpu_keeps_the_cpu_defaults(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(False)
    try:
        trainer = build_trainer(TrainConfig(epochs=1, progress=False), None, [], has_val=False)
        assert TrainConfig().accelerator == "auto"
        assert type(trainer.accelerator).__name__ == "CPUAccelerator"
        assert torch.are_deterministic_algorithms_enabled()  # deterministic by default on the CPU, as for "cpu"
    finally:
        torch.use_deterministic_algorithms(before)


def test_choices_are_checked_when_the_configuration_is_made():
    with pytest.raises(ConfigError, match="accelerator: expected one of auto, cpu, gpu, cuda, mps, got 'tpu'"):
        TrainConfig(accelerator="tpu")
    with pytest.raises(ConfigError, match="precision: expected one of 32-true, bf16-mixed, 16-mixed"):
        TrainConfig(precision="fp8")


def test_16_mixed_is_refused_on_the_cpu_before_anything_trains(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="precision: expected 32-true or bf16-mixed on the CPU"):
        tk.pretrain(data="digits", classes="0-2", backbone="seed_cnn", steps=2, precision="16-mixed",
                    out=tmp_path / "p", progress=False)
    assert not (tmp_path / "p").exists()


def test_bf16_mixed_trains_on_the_cpu(tmp_path):
    res = tk.pretrain(data="digits", classes="0-2", backbone="seed_cnn", steps=4, precision="bf16-mixed",
                      out=tmp_path / "p", progress=False)
    assert res.metrics["accuracy"] > 0 and (tmp_path / "p" / "bundle" / "model.safetensors").is_file()
    assert next(res.model.parameters()).dtype == torch.float32  # mixed precision: the weights stay float32
    recorded = res.metrics["provenance"]["device"]
    assert (recorded["accelerator"], recorded["precision"]) == ("cpu", "bf16-mixed") and recorded["threads"] >= 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_smoke_transfer_on_the_gpu_in_bf16(tmp_path):
    src = tk.pretrain(data="digits", classes="0-4", backbone="seed_cnn", steps=20, out=tmp_path / "src",
                      progress=False)
    assert src.metrics["accuracy"] > 0.3
    res = tk.transfer(source=tmp_path / "src", data="digits", classes="5-9", labels_per_class=10,
                      strategy="finetune", steps=20, precision="bf16-mixed", out=tmp_path / "t", progress=False)
    assert res.metrics["accuracy"] > 0.2 and (tmp_path / "t" / "bundle" / "model.safetensors").is_file()


def test_features_of_a_gpu_are_their_own_cache_entries_and_a_cpu_key_is_unchanged():
    from transferkit.backbones import create_backbone
    from transferkit.backbones.cache import cache_key
    from transferkit.data.prepare import TensorBatches

    model = create_backbone("seed_cnn", num_classes=3)
    data = TensorBatches(torch.zeros(4, 1, 28, 28, dtype=torch.uint8), None, (0.5,), (0.5,))
    cpu = cache_key(model, data, "d", None)
    assert cache_key(model, data, "d", None, "cpu") == cpu and cache_key(model, data, "d", None, "cuda") != cpu
    assert device.inference_device("cpu") is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_smoke_features_on_the_gpu_match_the_cpu(tmp_path, monkeypatch):
    from transferkit.backbones import create_backbone
    from transferkit.backbones.features import extract_features
    from transferkit.data.prepare import TensorBatches

    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path / "cache"))
    model = create_backbone("seed_cnn", num_classes=3)
    data = TensorBatches(torch.randint(0, 256, (70, 1, 28, 28), dtype=torch.uint8), None, (0.5,), (0.5,))
    on_gpu = extract_features(model, data, device="cuda")
    assert next(model.parameters()).device.type == "cpu"  # moved for the call and back
    torch.testing.assert_close(on_gpu, extract_features(model, data), atol=1e-3, rtol=1e-3)
    tk.pretrain(data="digits", classes="0-4", backbone="seed_cnn", steps=20, out=tmp_path / "src", progress=False)
    res = tk.transfer(source=tmp_path / "src", data="digits", classes="5-9", labels_per_class=10,
                      strategy="linear_probe", out=tmp_path / "p", progress=False)  # features extracted on the GPU
    assert res.metrics["accuracy"] > 0.2
