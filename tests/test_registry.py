"""One Registry type for every pluggable family (issue 28, item 3): names, aliases, one message for unknown names,
and ``transferkit list`` showing every family with its papers and files."""

from pathlib import Path

import pytest

import transferkit
from transferkit import api
from transferkit.api.listing import FAMILY_MODULES, family_names, get_family
from transferkit.cli.main import main
from transferkit.registry import FAMILIES, Registry, UnknownNameError

PACKAGE_ROOT = Path(transferkit.__file__).resolve().parent.parent


def test_registry_names_aliases_and_errors():
    reg: Registry[int] = Registry("test-things", "thing")
    try:
        reg.add("beta", 2, aliases=("b",), summary="the second", paper="Someone, 2020")
        reg.add("alpha", 1)
        assert reg.names() == ["alpha", "beta"] and reg.get("b") == 2 and reg["beta"] == 2
        assert "b" in reg and "gamma" not in reg and len(reg) == 2
        assert reg.entry("b").paper == "Someone, 2020" and reg.resolve("b") == "beta"
        with pytest.raises(ValueError, match="thing name 'b' is already registered"):
            reg.add("gamma", 3, aliases=("b",))
        with pytest.raises(UnknownNameError) as err:
            reg.get("gama")
        assert str(err.value) == "unknown thing 'gama'; valid things: alpha, beta (alias b)"
        assert err.value.family == "test-things" and err.value.valid == ["alpha", "beta"]
        with pytest.raises(ValueError, match="exists already"):
            Registry("test-things", "thing")
    finally:
        FAMILIES.pop("test-things")


@pytest.mark.parametrize("family", family_names())
def test_every_family_lists_entries_with_their_files(family):
    rows = api.list_family(family)
    assert rows, family
    for row in rows:
        assert row["name"] and row["summary"], (family, row)
        assert (PACKAGE_ROOT / row["file"]).is_file(), (family, row)
    assert [r["name"] for r in rows] == get_family(family).names()


@pytest.mark.parametrize("family", ["strategies", "regularizers", "fusion-methods", "few-shot-methods",
                                    "transferability-scores", "similarity-measures"])
def test_methods_name_their_papers(family):
    missing = [r["name"] for r in api.list_family(family) if not r["paper"]]
    assert not missing, f"{family}: no paper for {missing}"


def test_the_families_share_one_message():
    from transferkit.backbones import create_backbone
    from transferkit.data import get_dataset
    from transferkit.strategies import get_strategy

    for call, text in [(lambda: get_strategy("magic"), "unknown strategy 'magic'; valid strategies: finetune"),
                       (lambda: create_backbone("vgg"), "unknown backbone 'vgg'; valid backbones: "),
                       (lambda: get_dataset("cifar"), "unknown dataset 'cifar'; valid datasets: ")]:
        with pytest.raises(UnknownNameError, match=text):
            call()


def test_list_command(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(f in out for f in family_names())
    assert main(["list", "fusion-methods"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "soup_greedy" in out and "Wortsman" in out
    assert main(["list", "nothing"]) == 2
    assert "unknown family 'nothing'; valid families: adaptation-methods" in capsys.readouterr().out


def test_every_registry_is_listed():
    for module in set(FAMILY_MODULES.values()):
        __import__(module)
    assert set(FAMILIES) - {"test-things"} == set(FAMILY_MODULES)
