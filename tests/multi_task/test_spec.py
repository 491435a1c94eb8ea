"""The task spec: every bad spec is refused with a message naming the key, before any data is read."""

from pathlib import Path

import pytest

from transferkit.multi_task.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[2]
COARSE = {"tops": ["T-shirt/top", "Pullover", "Dress", "Coat", "Shirt"], "bottoms": ["Trouser"],
          "footwear": ["Sandal", "Sneaker", "Ankle boot"], "bags": ["Bag"]}


def test_example_spec_is_valid():
    spec = parse_spec(load_spec(ROOT / "examples" / "multitask" / "fashion_mnist.yaml"))
    assert [t.name for t in spec.tasks] == ["fine", "coarse", "footwear"]
    assert [t.name for t in spec.trained_tasks] == ["fine", "coarse"]
    assert spec.tasks[1].class_map["Sneaker"] == "footwear"  # the grouped form  group: [classes]
    assert spec.weighting == "uncertainty" and spec.sampling == "temperature"


@pytest.mark.parametrize(("raw", "message"), [
    ({"data": "x", "tasks": []}, "non-empty list"),
    ({"data": "x"}, "non-empty list"),
    ({"data": "x", "tasks": [{"name": "a"}, {"name": "a"}]}, "task name 'a' is used twice"),
    ({"data": "x", "tasks": [{"name": "a", "labels": 3}]}, "unknown key(s) ['labels']"),
    ({"data": "x", "tasks": [{"labels_per_class": 3}]}, "needs a 'name'"),
    ({"data": "x", "tasks": [{"name": "a b"}]}, "task names"),
    ({"data": "x", "tasks": [{"name": "a"}], "weighting": "magic"}, "valid choices: fixed, uncertainty, gradnorm, dwa"),
    ({"data": "x", "tasks": [{"name": "a"}], "sampling": "random"}, "proportional, uniform, temperature"),
    ({"data": "x", "tasks": [{"name": "a", "weight": 2}], "weighting": "uncertainty"}, "apply to weighting 'fixed'"),
    ({"data": "x", "tasks": [{"name": "a", "weight": -1}]}, "weight must be a number > 0"),
    ({"tasks": [{"name": "a"}]}, "no 'data'"),
    ({"data": "x", "tasks": [{"name": "a", "holdout": True}]}, "at least one task must be trained"),
    ({"data": "x", "tasks": [{"name": "a", "labels_per_class": 0}]}, "labels_per_class must be a whole number"),
    ({"data": "x", "tasks": [{"name": "a", "column": "c", "data": "y"}]}, "'column' reads another label column"),
    ({"data": "x", "tasks": [{"name": "a"}], "epoch": 3}, "unknown key(s) ['epoch']"),
    ({"data": "x", "tasks": [{"name": "a", "class_map": {"x": None}}]}, "needs a new class name"),
])
def test_bad_specs_are_refused(raw, message):
    with pytest.raises(ValueError) as err:
        parse_spec(raw)
    assert message in str(err.value)


def test_load_spec_names_the_file(tmp_path):
    bad = tmp_path / "tasks.yaml"
    bad.write_text("tasks: [unclosed\n")
    with pytest.raises(ValueError, match=r"--config .*tasks.yaml: not valid YAML"):
        load_spec(bad)
    with pytest.raises(ValueError, match="cannot read it"):
        load_spec(tmp_path / "missing.yaml")
