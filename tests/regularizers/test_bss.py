import pytest
import torch

from transferkit.backbones import create_backbone
from transferkit.regularizers import BatchSpectralShrinkage, batch_spectral_shrinkage


def test_equals_the_smallest_squared_singular_values():
    f = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    s = torch.linalg.svdvals(f)
    assert batch_spectral_shrinkage(f, 1).item() == pytest.approx(s[-1].item() ** 2, rel=1e-5)
    assert batch_spectral_shrinkage(f, 3).item() == pytest.approx(s[-3:].pow(2).sum().item(), rel=1e-5)
    # more than min(B, D) values: all of them, i.e. the squared Frobenius norm
    assert batch_spectral_shrinkage(f, 50).item() == pytest.approx(f.pow(2).sum().item(), rel=1e-5)
    with pytest.raises(ValueError, match=r"must be \(B, D\)"):
        batch_spectral_shrinkage(torch.randn(2, 3, 4))


def test_module_reads_head_input_through_the_hook_and_gradient_flows():
    torch.manual_seed(0)
    m = create_backbone("seed_cnn", num_classes=3)
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 3, (8,))
    reg = BatchSpectralShrinkage(eta=0.5, k=2).attach(m)
    with torch.no_grad():
        s = torch.linalg.svdvals(m.forward_features(x))
    expected = 0.5 * s[-2:].pow(2).sum().item() / 8  # the batch mean: Σσ² / B
    logits = m(x)
    assert reg._features is not None and reg._features.shape == (8, 64)  # recorded by the pre-hook
    loss = reg(m, x, y, logits)
    assert loss.item() == pytest.approx(expected, rel=1e-4)
    loss.backward()
    assert m.stages.conv1[0].weight.grad.abs().sum() > 0
    # without a preceding forward it recomputes the features: same value
    assert reg(m, x, y, logits).item() == pytest.approx(expected, rel=1e-4)
    reg.detach()
    m(x)
    assert reg._features is None and not m.head._forward_pre_hooks


def test_no_recording_without_gradients_and_bad_coefficients():
    m = create_backbone("seed_cnn", num_classes=3)
    reg = BatchSpectralShrinkage().attach(m)
    with torch.no_grad():
        m(torch.randn(2, 1, 28, 28))
    assert reg._features is None  # validation / prediction passes are not recorded
    with pytest.raises(ValueError, match="k must be a positive integer"):
        BatchSpectralShrinkage(k=0)
    with pytest.raises(ValueError, match="eta must be a number ≥ 0"):
        BatchSpectralShrinkage(eta=-0.1)
