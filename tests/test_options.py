"""Options declared once (issue 28): the typed configurations, the flags generated from them, YAML, config.yaml."""

import dataclasses
import subprocess
import sys

import pytest
import yaml

import transferkit as tk
from transferkit.cli.config import parse_generated
from transferkit.config import TrainConfig, TrainOptions
from transferkit.options import CONFIGS, PretrainConfig, TransferConfig

# a value of the right type for every flat name, different from its default: each must reach its field by its flag
VALUES = {"source": "src", "data": "digits", "classes": "0-4", "labels_per_class": 5, "val_per_class": 2,
          "val_fraction": 0.2, "class_map": "m.yaml", "image_size": 64, "weights": "w.safetensors", "max_length": 32,
          "strategy": "lora", "freeze": 2, "probe_layer": "stage2", "steps": 40, "epochs": 4, "batch_size": 8,
          "lr": 0.01, "weight_decay": 0.001, "optimizer": "sgd", "patience": 3, "schedule": "cosine",
          "warmup_epochs": 1, "augment": "light", "mixup": 0.2, "cutmix": 0.3, "class_weight": "balanced",
          "sampler": "balanced", "seed": 7, "accelerator": "gpu", "precision": "bf16-mixed", "devices": 2,
          "checkpoint_every": 50, "num_nodes": 2, "distributed": "ddp", "out": "runs/x", "cv": 3,
          "backbone": "resnet18", "pretrained": True, "strict": True, "workers": 3, "convert_channels": True,
          "head_init": False, "progress": False,
          "overwrite": True, "deterministic": False, "options": {"bn": "frozen", "r": 8}, "min_lr": 1e-5, "max_lr": 0.5,
          "teacher": "runs/t", "student": "lenet", "unlabelled": 100, "temperature": 2.0, "alpha": 0.5,
          "hint_layer": "stages.conv2", "teacher_layer": "stages.conv2", "hint_weight": 0.5, "baseline": False,
          "latency": False, "method": "prototypes", "evaluate_on": "rest", "iterations": 3, "max_pairs": 10,
          "head_c": 0.5, "n_way": 3, "n_query": 4, "episodes": 50, "episode_classifier": "logistic", "split": "train",
          "labels": "a,b", "templates": ("T {label}", "{label}"), "descriptions": "d.yaml", "candidates": ("a", "b"),
          "scores": "logme,leep", "similarity_data": "digits", "similarity_classes": "0-2", "similarity_samples": 50,
          "verify": 2, "verify_all": True, "members": ("r1", "r2"), "methods": "average,stacking", "fit_per_class": 20,
          "fit_on": "validation", "gate_epochs": 5, "budget": "90s", "keep": 3, "finalists": 1, "first_epochs": 2,
          "first_steps": 4, "eta": 2, "target": "digits", "frozen": True, "bottleneck": 16, "resize": True,
          "source_per_class": 30, "target_limit": 100, "target_val": 40, "test_limit": 90, "selection": "dev",
          "oracle_selection": True, "backbone_lr_mult": 0.5, "diagnostics": False, "plots": False,
          "param": ("lr=loguniform:1e-3:1e-1",), "space": "s.yaml", "fixed": ("batch_size=16",), "trials": 3,
          "timeout": 60.0, "metric": "val_loss", "storage": "sqlite:///x.db", "study_name": "s", "pruning": False,
          "pruner_startup_trials": 2, "pruner_warmup_epochs": 1, "model": "runs/m", "format": "torchscript",
          "opset": 13, "inputs": ("a.png", "b.png"), "output": "p.jsonl", "top_k": 3, "text_column": "body",
          "backend": "onnx", "host": "0.0.0.0", "port": 9000, "max_upload_mb": 3.0, "max_images": 4,
          "decode_timeout_s": 2.5, "api_key": "k", "max_request_mp": 50.0, "max_inflight_mp": 200.0,
          "decode_workers": 3, "body_timeout_s": 7.0, "max_texts": 5, "max_text_chars": 100, "long_texts": "refuse",
          "expose_lineage": True, "docs": True, "threads": 2, "log_level": "info", "family": "strategies",
          "spec": "tasks.yaml", "max_pixels": 1000, "older_than_days": 2.0, "cache_dir": "c", "action": "clear",
          "weighting": "dwa", "sampling": "uniform", "baselines": False, "source_epochs": 2,
          "imagenet": False, "imagenet_labels_per_class": "5,20"}
GRID = {"labels_per_class": "2,5,all", "seeds": "0,4", "strategies": ("lp=linear_probe", "finetune:bn=frozen"),
        "test_per_class": 20, "title": "T", "restart": True, "head_init": True}  # a grid's own values
SPECIAL = {"head_init": ["--no-head-init"], "progress": ["--no-progress"], "deterministic": ["--no-deterministic"],
           "baseline": ["--no-baseline"], "latency": ["--no-latency"], "diagnostics": ["--no-diagnostics"],
           "plots": ["--no-plots"], "pruning": ["--no-pruning"], "param": ["--param", "lr=loguniform:1e-3:1e-1"],
           "fixed": ["--fixed", "batch_size=16"], "model": ["runs/m"],
           "options": ["--option", "bn=frozen", "--option", "r=8"],
           "strategies": ["--strategies", "lp=linear_probe", "--strategy", "finetune:bn=frozen"],
           "templates": ["--template", "T {label}", "--template", "{label}"], "candidates": ["a", "b"],
           "members": ["r1", "r2"], "inputs": ["a.png", "b.png"], "decode_timeout_s": ["--decode-timeout", "2.5"],
           "body_timeout_s": ["--body-timeout", "7.0"], "family": ["strategies"], "baselines": ["--no-baselines"],
           "imagenet": ["--no-imagenet"], "spec": ["--config", "tasks.yaml"], "action": ["clear"]}


# names whose value or form differs by command (select: candidates positional; resume: RUN_DIR positional)
PER_COMMAND = {"auto": {"candidates": "a,b"}, "predict": {"format": "jsonl"}, "demo": {"seeds": 2},
               "multitask": {"progress": True}, "resume": {"out": "runs/x"}}
PER_COMMAND_FLAGS = {"resume": {"out": ["runs/x"]}}


def _flags(name, values=VALUES, special=SPECIAL):
    if name in special and not (name == "head_init" and values[name] is True):
        return special[name]
    value = values[name]
    return [f"--{name.replace('_', '-')}"] if value is True else [f"--{name.replace('_', '-')}", str(value)]


@pytest.mark.parametrize("command", sorted(CONFIGS))
def test_every_option_is_one_field_reached_by_its_flag_its_keyword_and_its_yaml_key(command, tmp_path):
    cls = CONFIGS[command]
    # resume: the resume command; pruner and verify_inputs: Python objects, no flag
    names = [n for n in cls.names() if n not in ("resume", "pruner", "verify_inputs")]
    values = {**VALUES, **GRID} if "seeds" in names else VALUES
    values = {**values, **PER_COMMAND.get(command, {})}
    special = {**{k: v for k, v in SPECIAL.items() if k not in PER_COMMAND.get(command, {})},
               **PER_COMMAND_FLAGS.get(command, {})}
    assert set(names) <= set(values), set(names) - set(values)
    wanted = {n: values[n] for n in names}
    by_flags = parse_generated(command, [f for n in names for f in _flags(n, values, special)])
    by_keywords = cls.build(**wanted)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"command": command, **{n.replace("_", "-"): list(v) if isinstance(v, tuple) else v
                                                           for n, v in wanted.items()}}))
    # multitask: --config is its task spec (a field), not options
    by_yaml = by_keywords if cls.SPEC_FILE else parse_generated(command, ["--config", str(path)])
    for built in (by_flags, by_keywords, by_yaml):
        flat = built.flat()
        assert {n: flat[n] for n in names} == wanted
    assert by_flags == by_keywords == by_yaml
    assert cls.from_mapping(by_flags.flat()) == by_flags  # config.yaml's record reads back to the same


def test_defaults_and_per_job_parts():
    assert TransferConfig().train == TrainOptions() and TransferConfig().run.out == "runs/transfer"
    p = PretrainConfig()
    assert (p.train.epochs, p.train.batch_size, p.train.schedule, p.run.out) == (3, 128, "constant", "runs/source")
    assert parse_generated("transfer", []).strategy.options is None  # as the Python default
    cfg = TrainConfig.of(TransferConfig.build(lr=0.5).train, warmup_steps=3)
    assert (cfg.lr, cfg.warmup_steps, cfg.monitor) == (0.5, 3, "val_loss")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0  # type: ignore[misc]


def test_flags_win_over_the_file_and_options_add_to_it(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"seed": 7, "labels-per-class": 5, "options": {"bn": "frozen", "r": 4},
                                    "deterministic": True, "classes": [1, 2]}))
    c = parse_generated("transfer", ["--config", str(path), "--seed", "0", "--option", "r=8"])
    assert (c.train.seed, c.task.labels_per_class, c.task.classes) == (0, 5, "1,2")
    assert c.strategy.options == {"bn": "frozen", "r": 8} and c.train.deterministic is True
    c = parse_generated("transfer", [f"--config={path}", "--no-deterministic"])
    assert c.train.deterministic is False and c.train.seed == 7


def test_bad_names_and_values_are_named(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['labels_per_klass'\]; valid: .*labels_per_class"):
        TransferConfig.build(labels_per_klass=5)
    with pytest.raises(TypeError, match="given twice"):
        TransferConfig.build("a", source="b")
    with pytest.raises(ValueError, match="unknown option"):  # refused before anything loads or is written
        tk.transfer("no-such-source", out=tmp_path / "r", labels_per_klass=5)
    assert not (tmp_path / "r").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ValueError, match="expected a mapping"):
        parse_generated("transfer", ["--config", str(bad)])
    with pytest.raises(SystemExit) as e:  # tyro names the flag and the valid choices
        parse_generated("transfer", ["--optimizer", "adamm"])
    assert e.value.code == 2 and "adamw" in capsys.readouterr().err  # on standard error, as argparse's
    with pytest.raises(SystemExit):
        parse_generated("transfer", ["--option", "no-equals-sign"])
    assert "KEY=VALUE" in capsys.readouterr().err


def test_a_file_value_of_the_wrong_type_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    for text, message in (("labels-per-class: ten\n", r"^labels_per_class: expected a value of type int \| None"),
                          ("optimizer: adamm\n", r"^optimizer: expected a value of type Literal\['adamw'"),
                          ("strict: maybe\n", r"^strict: expected a value of type bool")):
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            parse_generated("transfer", ["--config", str(path)])
    path.write_text("lr: 1\ndevices: auto\nclasses: [1, 2]\n")  # an int for a float, a name for int | str, a list
    c = parse_generated("transfer", ["--config", str(path)])
    assert (c.train.lr, c.train.devices, c.task.classes) == (1, "auto", "1,2")


def test_resume_flag_is_the_resume_command():
    from transferkit.options import ResumeConfig

    c = parse_generated("transfer", ["--resume", "runs/x", "--no-progress"])
    assert c == ResumeConfig(out="runs/x", progress=False) == parse_generated("resume", ["runs/x", "--no-progress"])
    assert parse_generated("multitask", ["--resume", "--config", "t.yaml"]).resume is True  # its own flag there


def test_generated_help_lists_every_flag_and_loads_no_torch():
    code = ("import sys\nfrom transferkit.cli.main import main\n"
            "try:\n    main(['transfer', '--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
            "print('TORCH', 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"COLUMNS": "200", "PATH": ""}).stdout
    for name in TransferConfig.names():
        if name not in ("resume", "options", "deterministic", "head_init", "progress"):
            assert f"--{name.replace('_', '-')}" in out, name
    for flag in ("--option", "--no-deterministic", "--no-head-init", "--no-progress", "--config", "--resume"):
        assert flag in out
    assert out.strip().endswith("TORCH False")


def test_the_top_level_listing_describes_each_generated_command_as_its_configuration_does():
    from transferkit.cli.main import GENERATED

    assert set(GENERATED) == set(CONFIGS)
    assert all(GENERATED[name] == " ".join(str(CONFIGS[name].__doc__).split("\n\n")[0].split()) for name in CONFIGS)
