"""Few-shot methods as plain functions: pairs, the pair loss, prototypes, episodes, the logistic head, prompts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transferkit.few_shot import (
    CosinePairLoss,
    class_prototypes,
    cosine_scores,
    evaluate_episodes,
    fit_logistic_head,
    label_prompts,
    make_pairs,
    sample_episode,
)


def blobs(n_classes: int, per_class: int, dim: int = 16, spread: float = 0.3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_classes, dim, generator=g) * 3
    y = torch.arange(n_classes).repeat_interleave(per_class)
    return centres[y] + spread * torch.randn(len(y), dim, generator=g), y


def test_make_pairs_one_positive_and_one_negative_per_example_and_iteration():
    y = np.array([0, 0, 1, 1, 2, 2])
    pairs, targets = make_pairs(y, iterations=3, seed=0)
    assert pairs.shape == (36, 2) and targets.sum() == 18
    same = torch.from_numpy(y)[pairs[:, 0]] == torch.from_numpy(y)[pairs[:, 1]]
    assert torch.equal(same.float(), targets)  # positives are same-class pairs, negatives cross-class
    assert (pairs[:, 0] != pairs[:, 1]).all()
    again, _ = make_pairs(y, iterations=3, seed=0)
    assert torch.equal(pairs, again)  # seeded
    capped, t = make_pairs(y, iterations=3, seed=0, max_pairs=10)
    assert len(capped) == 10 == len(t)


def test_make_pairs_singleton_class_gets_only_negatives_and_bad_input_is_refused():
    pairs, targets = make_pairs(np.array([0, 1, 1]), iterations=2)
    assert len(pairs) == 2 * (1 + 2 * 2) and targets.sum() == 4
    with pytest.raises(ValueError, match="at least 2 classes"):
        make_pairs(np.array([3, 3, 3]))
    with pytest.raises(ValueError, match="iterations must be"):
        make_pairs(np.array([0, 1]), iterations=0)


def test_cosine_pair_loss_is_zero_for_perfect_embeddings_and_has_gradients():
    u = torch.tensor([[1.0, 0.0], [1.0, 0.0]], requires_grad=True)
    v = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    loss = CosinePairLoss()(u, v, torch.tensor([1.0, 0.0]))
    assert loss.item() == pytest.approx(0.0, abs=1e-7)
    bad = CosinePairLoss()(u, v, torch.tensor([0.0, 1.0]))
    assert bad.item() == pytest.approx(1.0)
    bad.backward()
    assert u.grad is not None and u.grad.abs().sum() > 0


def test_prototypes_are_unit_class_means_and_classify_blobs():
    x, y = blobs(3, 10)
    protos = class_prototypes(x, y, 3)
    assert protos.shape == (3, 16) and torch.allclose(protos.norm(dim=1), torch.ones(3))
    assert (cosine_scores(x, protos).argmax(1) == y).float().mean() > 0.95
    with pytest.raises(ValueError, match=r"classes \[3\] have no examples"):
        class_prototypes(x, y, 4)


def test_logistic_head_matches_sklearn_and_handles_absent_classes():
    x, y = blobs(3, 12)
    w, b = fit_logistic_head(x, y, 5)  # classes 3 and 4 absent: never predicted
    logits = x @ w.T + b
    assert (logits.argmax(1) == y).all() and w.shape == (5, 16)
    assert (logits[:, 3:] < -1e3).all()
    xb, yb = blobs(2, 12, seed=1)
    wb, bb = fit_logistic_head(xb, yb + 1, 3)  # binary, written as two rows
    assert ((xb @ wb.T + bb).argmax(1) == yb + 1).all()
    with pytest.raises(ValueError, match="at least 2 classes"):
        fit_logistic_head(xb[:3], torch.zeros(3, dtype=torch.int64), 2)


def test_episodes_give_high_accuracy_on_separable_features_and_chance_on_noise():
    x, y = blobs(8, 30)
    good = evaluate_episodes(x, y, n_way=5, k_shot=2, n_query=5, episodes=100, seed=0)
    assert len(good.accuracies) == 100 and good.mean > 0.95 and 0 <= good.ci95 < 0.02
    noise = torch.randn(240, 16, generator=torch.Generator().manual_seed(1))
    chance = evaluate_episodes(noise, y, n_way=5, k_shot=2, n_query=5, episodes=200, seed=0)
    assert abs(chance.mean - 0.2) < 3 * chance.ci95 + 0.03  # 1/N-way, within the interval
    logistic = evaluate_episodes(x, y, n_way=4, k_shot=3, n_query=4, episodes=20, classifier="logistic")
    assert logistic.mean > 0.95 and logistic.to_dict()["episodes"] == 20
    again = evaluate_episodes(noise, y, n_way=5, k_shot=2, n_query=5, episodes=200, seed=0)
    assert again.accuracies == chance.accuracies  # seeded


def test_episode_sampling_is_disjoint_and_bad_settings_are_refused():
    y = np.repeat(np.arange(6), 10)
    classes, s, q = sample_episode(y, 4, 3, 5, np.random.default_rng(0))
    assert len(set(classes)) == 4 and len(s) == 12 and len(q) == 20 and not set(s) & set(q)
    assert set(y[s]) == set(classes) == set(y[q])
    with pytest.raises(ValueError, match="need 4 classes with at least 12 examples each; only 0"):
        sample_episode(y, 4, 6, 6, np.random.default_rng(0))
    x = torch.randn(60, 4)
    with pytest.raises(ValueError, match="valid choices: prototypes, logistic"):
        evaluate_episodes(x, y, classifier="knn")
    with pytest.raises(ValueError, match="n_way must be ≥ 2"):
        evaluate_episodes(x, y, n_way=1)


def test_label_prompts_templates_descriptions_and_errors():
    p = label_prompts(["Sports", "World"], ["About {label}.", "{label} news"], {"World": "international politics"})
    assert p == [["About Sports.", "Sports news"], ["international politics"]]
    with pytest.raises(ValueError, match="repeated: \\['a'\\]"):
        label_prompts(["a", "a"])
    with pytest.raises(ValueError, match="no '\\{label\\}' placeholder"):
        label_prompts(["a", "b"], ["no placeholder"])
    with pytest.raises(ValueError, match="not among the labels"):
        label_prompts(["a", "b"], descriptions={"c": "x"})
    with pytest.raises(ValueError, match="description of label 'a' is empty"):
        label_prompts(["a", "b"], descriptions={"a": "  "})
