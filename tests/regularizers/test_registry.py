import pytest

from transferkit.regularizers import DELTA, L2SP, BatchSpectralShrinkage, get_regularizer, list_regularizers


def test_names_build_the_right_classes_with_coefficients():
    assert list_regularizers() == ["bss", "delta", "l2sp"]
    assert isinstance(get_regularizer("bss", eta=0.1, k=2), BatchSpectralShrinkage)
    reg = get_regularizer("l2sp", alpha=0.2, beta=None)  # None: the method's default
    assert isinstance(reg, L2SP) and (reg.alpha, reg.beta) == (0.2, 0.01)
    assert isinstance(get_regularizer("delta", attention=False), DELTA)


def test_typos_list_the_valid_choices():
    with pytest.raises(ValueError, match="unknown regularizer 'l2-sp'; valid regularizers: bss, delta, l2sp"):
        get_regularizer("l2-sp")
    with pytest.raises(ValueError, match=r"'bss' has no coefficient\(s\) \['alpha'\]; valid: eta, k, head"):
        get_regularizer("bss", alpha=1.0)
