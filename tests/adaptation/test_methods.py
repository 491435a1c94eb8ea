"""Adaptation methods as loss modules: parsing, options, finite terms, the adversarial sign, the conditioning."""

import math

import pytest
import torch

from transferkit.adaptation.methods import CDAN, DANN, Combined, SelfTraining, build_method, list_methods, parse_method


def _batch(n=16, d=8, c=3, seed=0, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    f_s = torch.randn(n, d, generator=g, requires_grad=True)
    f_t = (torch.randn(n, d, generator=g) + shift).requires_grad_(True)
    return f_s, torch.randn(n, c, generator=g), f_t, torch.randn(n, c, generator=g)


def test_every_registered_method_is_listed_with_a_summary():
    names = {m.name for m in list_methods()}
    assert {"source_only", "target_oracle", "dann", "cdan", "cdan+e", "dan", "coral", "adabn", "self_training"} <= names
    assert all(m.summary for m in list_methods())


def test_parse_method_keeps_cdan_e_whole_and_refuses_bad_combinations():
    assert parse_method("cdan+e") == ["cdan+e"]
    assert parse_method("cdan+e+self_training") == ["cdan+e", "self_training"]
    assert parse_method("dann+adabn") == ["dann", "adabn"]
    with pytest.raises(ValueError, match="unknown adaptation method 'dnn'.*valid adaptation methods: source_only"):
        parse_method("dnn")
    with pytest.raises(ValueError, match="^method: expected 'source_only' alone"):
        parse_method("source_only+dann")
    with pytest.raises(ValueError, match="one adversarial method"):
        parse_method("dann+cdan")
    with pytest.raises(ValueError, match="^method: expected each method once"):
        parse_method("coral+coral")


def test_options_go_to_the_part_that_has_them_and_unknown_ones_list_the_valid():
    m = build_method("dann+self_training", 8, 3, {"threshold": 0.95, "dann.trade_off": 0.3})
    assert isinstance(m, Combined) and m.parts == ["dann", "self_training"]
    dann, st = m.methods
    assert dann.options["trade_off"] == 0.3 and st.options["trade_off"] == 1.0 and st.options["threshold"] == 0.95
    with pytest.raises(ValueError, match="options: expected an option of method .*dann.hidden.*got 'nope'"):
        build_method("dann+self_training", 8, 3, {"nope": 1})
    with pytest.raises(ValueError, match="threshold must be in"):
        build_method("self_training", 8, 3, {"threshold": 1.5})


@pytest.mark.parametrize("spec", ["dann", "cdan", "cdan+e", "dan", "coral", "self_training", "dann+self_training"])
def test_every_loss_method_gives_finite_scalar_terms_with_gradients(spec):
    f_s, l_s, f_t, l_t = _batch()
    method = build_method(spec, 8, 3)
    terms = method(f_s, l_s, f_t, l_t, 0.5)
    assert terms and all(v.ndim == 0 and math.isfinite(float(v.detach())) for v in terms.values())
    total = sum(terms.values())
    if spec != "self_training":  # random logits rarely pass the 0.9 threshold: its term may be 0
        total.backward()
        assert f_s.grad is not None and f_s.grad.abs().sum() > 0


def test_methods_without_loss_terms():
    for spec in ("source_only", "target_oracle", "adabn"):
        m = build_method(spec, 8, 3)
        assert m(*_batch()[:2], None, None, 0.3) == {} and m.uses_target is False
    assert build_method("adabn", 8, 3).post_hoc == "adabn"
    assert build_method("dann+adabn", 8, 3).post_hoc == "adabn"
    assert build_method("target_oracle", 8, 3).target_labels is True


def test_dann_reverses_the_discriminators_gradient_into_the_features():
    """The features receive −λ × the gradient that would help the discriminator: gradient reversal at work."""
    f_s, l_s, f_t, l_t = _batch(shift=1.0)
    torch.manual_seed(0)
    dann = DANN(8, 3)
    loss = dann(f_s, l_s, f_t, l_t, progress=1.0)["domain_loss"]
    loss.backward()
    reversed_grad = f_s.grad.clone()
    # the same loss without reversal
    f_s2 = f_s.detach().clone().requires_grad_(True)
    d = dann.discriminator(torch.cat([f_s2, f_t.detach()]))
    from transferkit.adaptation.methods import _domain_loss

    _domain_loss(d[:16], d[16:]).backward()
    lam = dann.grl.coeff
    assert 0.99 < lam <= 1.0
    assert torch.allclose(reversed_grad, -lam * f_s2.grad, atol=1e-6)


def test_dann_coefficient_is_zero_at_the_start():
    f_s, l_s, f_t, l_t = _batch()
    dann = DANN(8, 3)
    dann(f_s, l_s, f_t, l_t, progress=0.0)["domain_loss"].backward()
    assert dann.grl.coeff == 0.0 and f_s.grad.abs().sum() == 0


def test_cdan_uses_the_multilinear_map_or_its_randomised_form_when_wide():
    small = CDAN(8, 3)
    assert not small.randomized and small.discriminator[0].in_features == 24
    wide = CDAN(512, 10, randomized_dim=256)
    assert wide.randomized and wide.discriminator[0].in_features == 256
    f, g = torch.randn(4, 8), torch.softmax(torch.randn(4, 3), 1)
    m = small._map(f, g)
    assert torch.allclose(m.view(4, 3, 8), g[:, :, None] * f[:, None, :])


def test_cdan_e_differs_from_cdan_only_by_the_entropy_weights():
    f_s, l_s, f_t, l_t = _batch()
    torch.manual_seed(0)
    plain = build_method("cdan", 8, 3)
    torch.manual_seed(0)
    weighted = build_method("cdan+e", 8, 3)
    weighted.load_state_dict(plain.state_dict())
    a = plain(f_s, l_s, f_t, l_t, 0.5)["domain_loss"]
    b = weighted(f_s, l_s, f_t, l_t, 0.5)["domain_loss"]
    assert not torch.allclose(a, b)
    # with equally confident predictions everywhere the weights are uniform: the losses agree
    flat = torch.zeros_like(l_s)
    assert torch.allclose(plain(f_s, flat, f_t, flat, 0.5)["domain_loss"], weighted(f_s, flat, f_t, flat, 0.5)[
        "domain_loss"], atol=1e-6)


def test_self_training_uses_only_confident_target_predictions():
    st = SelfTraining(4, 3, threshold=0.9)
    l_t = torch.tensor([[10.0, 0, 0], [0.1, 0, 0], [0, 0, 9.0], [0, 0.2, 0]], requires_grad=True)
    loss = st(None, None, None, l_t, progress=1.0)["pseudo_loss"]
    assert st.last_mask_rate == 0.5 and loss > 0
    loss.backward()
    assert l_t.grad[1].abs().sum() == 0 and l_t.grad[3].abs().sum() == 0 and l_t.grad[0].abs().sum() > 0
    assert float(st(None, None, None, l_t, progress=0.0)["pseudo_loss"].detach()) == 0.0  # ramped in from 0
