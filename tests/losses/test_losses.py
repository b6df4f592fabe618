"""Losses: hand-computed values, per-pair loop references, the SBDL/BDL property, gradients,
permutation invariance, degenerate batches, and agreement with pytorch-metric-learning."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dmlbench import losses
from dmlbench.losses import LOSSES, build

R = 1 / math.sqrt(2)  # cosine of 45 degrees


def sp(x: float) -> float:
    """softplus"""
    return math.log1p(math.exp(x))


# Four 2-D samples, labels [0, 0, 1, 1]; after normalisation e0=(1,0), e1=(r,r), e2=(0,1), e3=(-1,0).
# Cosines: s01 = r, s02 = 0, s03 = -1, s12 = r, s13 = -r, s23 = 0.
HAND_EMB = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 3.0], [-1.0, 0.0]], dtype=torch.float64)
HAND_LABELS = torch.tensor([0, 0, 1, 1])
# Attribute probabilities ~ a0=(1,0), a1=(1,0), a2=(0,1), a3=(1,1): g01=1, g23=r, g02=0, g03=r, g12=0, g13=r.
HAND_ATTR_LOGITS = torch.tensor(
    [[40.0, -40.0], [40.0, -40.0], [-40.0, 40.0], [40.0, 40.0]], dtype=torch.float64
)
HAND_ATTR_TARGETS = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)

OUR_LOSSES = ["bdl", "sbdl", "contrastive", "triplet", "batch-hard", "multi-similarity", "bce-attr"]


def call(loss: losses.MetricLoss, emb: torch.Tensor, labels: torch.Tensor, tuples: torch.Tensor | None = None,
         logits: torch.Tensor | None = None, targets: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """Call a loss, feeding attributes only to losses that need them."""
    if loss.needs_attributes and logits is None:
        logits = torch.randn(len(emb), 5, dtype=emb.dtype, generator=torch.Generator().manual_seed(1))
        targets = (logits > 0).to(emb.dtype)
        logits.requires_grad_()
    if loss.requires_tuples and tuples is None:
        tuples = all_triplets(labels)
    return loss(emb, labels, tuples=tuples, attr_logits=logits, attr_targets=targets)


def all_triplets(labels: torch.Tensor) -> torch.Tensor:
    out = [
        (a, p, n)
        for a in range(len(labels))
        for p in range(len(labels))
        for n in range(len(labels))
        if a != p and labels[a] == labels[p] and labels[n] != labels[a]
    ]
    return torch.tensor(out, dtype=torch.long).reshape(-1, 3)


# ---------------------------------------------------------------- hand-computed values


def test_bdl_hand_value_and_stats() -> None:
    loss = build("bdl", alpha=2, beta=0.5, C=25)
    value = loss(HAND_EMB, HAND_LABELS)
    pos = (sp(-2 * (R - 0.5)) + sp(-2 * (0 - 0.5))) / 2
    neg = (sp(50 * (0 - 0.5)) + sp(50 * (-1 - 0.5)) + sp(50 * (R - 0.5)) + sp(50 * (-R - 0.5))) / 4
    assert value.item() == pytest.approx(pos + neg, abs=1e-12)
    stats = loss.last_stats
    assert stats["pos_pairs"] == 4 and stats["neg_pairs"] == 8 and stats["active_pairs"] == 12
    assert stats["pos_sim"] == pytest.approx(R / 2) and stats["neg_sim"] == pytest.approx(-0.25)
    assert stats["pos_loss"] == pytest.approx(pos) and stats["neg_loss"] == pytest.approx(neg)
    assert stats["degenerate"] == 0.0


def test_sbdl_hand_value() -> None:
    loss = build("sbdl", alpha=2, beta=0.5, lambda_attr=0.0)
    value = loss(HAND_EMB, HAND_LABELS, attr_logits=HAND_ATTR_LOGITS, attr_targets=HAND_ATTR_TARGETS)
    # positives: (0,1) s=r g=1; (2,3) s=0 g=r.  negatives: (0,2) s=0 g=0; (0,3) s=-1 g=r; (1,2) s=r g=0; (1,3) s=-r g=r
    pos = (sp(-2 * (R + 1 - 0.5)) + sp(-2 * (0 + R - 0.5))) / 2
    neg = (
        sp(2 * (0 - 0 - 0.5)) + sp(2 * (-1 - R - 0.5)) + sp(2 * (R - 0 - 0.5)) + sp(2 * (-R - R - 0.5))
    ) / 4
    assert value.item() == pytest.approx(pos + neg, abs=1e-9)
    assert loss.last_stats["g_pos"] == pytest.approx((1 + R) / 2, abs=1e-9)
    assert loss.last_stats["g_neg"] == pytest.approx((0 + R + 0 + R) / 4, abs=1e-9)


def test_sbdl_bce_term_is_lambda_times_mean_bce() -> None:
    logits = torch.tensor([[0.5, -1.0], [2.0, 0.0], [-0.3, 1.5], [1.0, 1.0]], dtype=torch.float64)
    with_bce = build("sbdl", lambda_attr=0.5)(
        HAND_EMB, HAND_LABELS, attr_logits=logits, attr_targets=HAND_ATTR_TARGETS
    )
    without = build("sbdl", lambda_attr=0.0)(
        HAND_EMB, HAND_LABELS, attr_logits=logits, attr_targets=HAND_ATTR_TARGETS
    )
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    bce = [
        -(t * math.log(sig(z)) + (1 - t) * math.log(1 - sig(z)))
        for z, t in zip(logits.flatten().tolist(), HAND_ATTR_TARGETS.flatten().tolist(), strict=True)
    ]
    assert (with_bce - without).item() == pytest.approx(0.5 * sum(bce) / len(bce), abs=1e-12)


def test_bce_attr_hand_value() -> None:
    logits = torch.zeros(4, 3, dtype=torch.float64)  # sigmoid(0) = 1/2: BCE = log 2 whatever the targets
    value = build("bce-attr", weight=2.0)(
        HAND_EMB, HAND_LABELS, attr_logits=logits, attr_targets=torch.ones(4, 3)
    )
    assert value.item() == pytest.approx(2 * math.log(2))


def test_contrastive_hand_value() -> None:
    d_r = math.sqrt(2 - 2 * R)  # distance of unit vectors at 45 degrees
    value = build("contrastive")(HAND_EMB, HAND_LABELS)
    # positives: d = d_r, sqrt(2) -> relu(d - 0) both active; negatives: only (1,2) with d_r < 1 is active
    assert value.item() == pytest.approx((d_r + math.sqrt(2)) / 2 + (1 - d_r), abs=1e-12)
    value_mean = build("contrastive", reduction="mean")(HAND_EMB, HAND_LABELS)
    assert value_mean.item() == pytest.approx((d_r + math.sqrt(2)) / 2 + (1 - d_r) / 4, abs=1e-12)


def test_contrastive_exact_duplicate_positive_is_not_active() -> None:
    # e0 = e1 (a duplicate positive pair, d = 0), e2 = (0, 1), e3 = (.6, .8); labels [0, 0, 1, 1].
    # Positives: d01 = 0 -> loss 0, inactive; d23 = sqrt(2 - 2 * .8) = sqrt(.4) -> mean over active sqrt(.4).
    # Negatives (margin 1): d02 = d12 = sqrt(2) -> 0; d03 = d13 = sqrt(2 - 2 * .6) = sqrt(.8) -> 1 - sqrt(.8).
    # Total sqrt(.4) + 1 - sqrt(.8) = 0.7380; counting the duplicate (clamped at d = 1e-6) gave 0.4218.
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    want = math.sqrt(0.4) + 1 - math.sqrt(0.8)
    loss = build("contrastive")
    value = loss(emb, labels)
    assert value.item() == pytest.approx(want, abs=1e-12) and round(want, 4) == 0.7380
    assert value.item() == pytest.approx(build("contrastive-pml")(emb, labels).item(), abs=1e-9)
    assert loss.last_stats["active_pairs"] == 2 + 4  # ordered pairs (2,3), (3,2); (0,3), (3,0), (1,3), (3,1)
    (grad,) = torch.autograd.grad(value, emb)
    assert torch.isfinite(grad).all()
    # The same pairs as predefined triplets (anchor, positive, negative): (0, 1, 3) and (2, 3, 0).
    tuples = torch.tensor([[0, 1, 3], [2, 3, 0]])
    value = loss(emb, labels, tuples=tuples)
    assert value.item() == pytest.approx(math.sqrt(0.4) + 1 - math.sqrt(0.8), abs=1e-12)
    assert value.item() == pytest.approx(build("contrastive-pml")(emb, labels, tuples=tuples).item(), abs=1e-9)
    assert torch.isfinite(torch.autograd.grad(value, emb)[0]).all()


def test_batch_hard_hand_value() -> None:
    d_r = math.sqrt(2 - 2 * R)
    loss = build("batch-hard", margin=0.2)
    value = loss(HAND_EMB, HAND_LABELS)
    # anchor 0: 0; anchor 1: d_r - d_r + 0.2; anchor 2: sqrt2 - d_r + 0.2; anchor 3: sqrt2 - 2cos(22.5)... < 0
    assert value.item() == pytest.approx((0.2 + math.sqrt(2) - d_r + 0.2) / 4, abs=1e-12)
    assert loss.last_stats["triplets"] == 4 and loss.last_stats["active_triplets"] == 2


def test_triplet_hand_value_on_predefined_triplets() -> None:
    d_r = math.sqrt(2 - 2 * R)
    loss = build("triplet", margin=0.2)
    value = loss(HAND_EMB, HAND_LABELS, tuples=torch.tensor([[0, 1, 2], [2, 3, 1]]))
    assert value.item() == pytest.approx((math.sqrt(2) - d_r + 0.2) / 2, abs=1e-12)
    assert loss.last_stats["active_triplets"] == 1 and loss.last_stats["pos_pairs"] == 2


def test_multi_similarity_hand_value() -> None:
    loss = build("multi-similarity")  # alpha 2, beta 50, base 0.5, epsilon 0.1
    value = loss(HAND_EMB, HAND_LABELS)
    # anchors 0 and 3 mine nothing; anchor 1 keeps pos s=r and neg s=r; anchor 2 keeps pos s=0, negs s=0 and r
    loss1 = sp(-2 * (R - 0.5)) / 2 + sp(50 * (R - 0.5)) / 50
    loss2 = sp(-2 * (0 - 0.5)) / 2 + math.log(1 + math.exp(-25) + math.exp(50 * (R - 0.5))) / 50
    assert value.item() == pytest.approx((loss1 + loss2) / 4, abs=1e-12)
    assert loss.last_stats["mined_pos_pairs"] == 2 and loss.last_stats["mined_neg_pairs"] == 3


# ---------------------------------------------------------------- loop references for BDL / SBDL


def loop_binomial(emb, labels, alpha, beta, C, g=None, tuples=None) -> float:  # noqa: ANN001
    """Per-pair Python loop over ordered pairs (or the 2T pairs of the tuples)."""
    e = F.normalize(emb, dim=1).tolist()
    cos = lambda a, b: sum(x * y for x, y in zip(e[a], e[b], strict=True))  # noqa: E731
    gval = (lambda a, b: 0.0) if g is None else (lambda a, b: g[a][b])  # noqa: E731
    if tuples is None:
        n = len(labels)
        pairs = [(i, j, labels[i] == labels[j]) for i in range(n) for j in range(n) if i != j]
    else:
        pairs = [(a, p, True) for a, p, _ in tuples] + [(a, q, False) for a, _, q in tuples]
    pos = [sp(-alpha * (cos(i, j) + gval(i, j) - beta)) for i, j, same in pairs if same]
    neg = [sp(C * alpha * (cos(i, j) - gval(i, j) - beta)) for i, j, same in pairs if not same]
    return (sum(pos) / len(pos) if pos else 0.0) + (sum(neg) / len(neg) if neg else 0.0)


def attr_cosines(logits: torch.Tensor) -> list[list[float]]:
    p = torch.sigmoid(logits).tolist()
    norm = [math.sqrt(sum(v * v for v in row)) for row in p]
    return [[sum(x * y for x, y in zip(p[i], p[j], strict=True)) / (norm[i] * norm[j]) for j in range(len(p))]
            for i in range(len(p))]  # fmt: skip


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("image_wise", [False, True])
def test_bdl_and_sbdl_match_per_pair_loops(seed: int, image_wise: bool) -> None:
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(12, 6, dtype=torch.float64, generator=gen)
    labels = torch.randint(0, 4, (12,), generator=gen)
    logits = torch.randn(12, 5, dtype=torch.float64, generator=gen)
    targets = (torch.rand(12, 5, generator=gen) < 0.5).double()
    tuples = None
    if image_wise:
        tuples = all_triplets(labels)[torch.randperm(len(all_triplets(labels)), generator=gen)[:7]]
    tuple_list = None if tuples is None else tuples.tolist()
    bdl = build("bdl", alpha=3.0, beta=0.1, C=5.0)(emb, labels, tuples=tuples)
    assert bdl.item() == pytest.approx(
        loop_binomial(emb, labels.tolist(), 3.0, 0.1, 5.0, tuples=tuple_list), abs=1e-10
    )
    sbdl = build("sbdl", alpha=2.0, beta=0.5, C=2.0, lambda_attr=0.0)(
        emb, labels, tuples=tuples, attr_logits=logits, attr_targets=targets
    )
    expected = loop_binomial(emb, labels.tolist(), 2.0, 0.5, 2.0, g=attr_cosines(logits), tuples=tuple_list)
    assert sbdl.item() == pytest.approx(expected, abs=1e-10)


def test_tuples_use_exactly_the_2t_pairs() -> None:
    """Image-wise: only (a, p) and (a, n) of each triplet count (SGML Fig. 6a), not every pair."""
    emb = HAND_EMB
    tuples = torch.tensor([[0, 1, 2]])
    value = build("bdl")(emb, HAND_LABELS, tuples=tuples)
    assert value.item() == pytest.approx(sp(-2 * (R - 0.5)) + sp(50 * (0 - 0.5)), abs=1e-12)
    assert value.item() != pytest.approx(build("bdl")(emb, HAND_LABELS).item())
    contrastive = build("contrastive")
    assert contrastive(emb, HAND_LABELS, tuples=tuples).item() == pytest.approx(math.sqrt(2 - 2 * R))
    assert contrastive.last_stats["pos_pairs"] == 1 and contrastive.last_stats["neg_pairs"] == 1


# ---------------------------------------------------------------- SBDL / BDL property


@pytest.mark.parametrize("C", [1.0, 3.0])
def test_sbdl_with_identical_attributes_is_bdl_with_shifted_beta(C: float) -> None:
    """g == 1 everywhere: SBDL = BDL(beta - 1) on positives + BDL(beta + 1) on negatives."""
    gen = torch.Generator().manual_seed(3)
    emb = torch.randn(16, 8, dtype=torch.float64, generator=gen)
    labels = torch.randint(0, 4, (16,), generator=gen)
    logits = torch.randn(1, 6, dtype=torch.float64, generator=gen).expand(
        16, 6
    )  # identical attribute vectors
    alpha, beta = 2.0, 0.5
    sbdl = build("sbdl", alpha=alpha, beta=beta, C=C, lambda_attr=0.0)
    value = sbdl(emb, labels, attr_logits=logits, attr_targets=torch.zeros(16, 6))
    assert sbdl.last_stats["g_pos"] == pytest.approx(1.0) and sbdl.last_stats["g_neg"] == pytest.approx(1.0)
    bdl_pos, bdl_neg = (
        build("bdl", alpha=alpha, beta=beta - 1, C=C),
        build("bdl", alpha=alpha, beta=beta + 1, C=C),
    )
    bdl_pos(emb, labels)
    bdl_neg(emb, labels)
    assert value.item() == pytest.approx(
        bdl_pos.last_stats["pos_loss"] + bdl_neg.last_stats["neg_loss"], abs=1e-12
    )


# ---------------------------------------------------------------- gradients


def small_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(8, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    logits = torch.randn(8, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    targets = (torch.rand(8, 3, generator=gen) < 0.5).double()
    return emb, labels, logits, targets


@pytest.mark.parametrize("name", ["bdl", "contrastive", "batch-hard", "multi-similarity", "triplet"])
def test_gradcheck_embeddings(name: str) -> None:
    emb, labels, _, _ = small_batch()
    loss = build(name)
    tuples = all_triplets(labels)[::5] if loss.requires_tuples else None
    assert torch.autograd.gradcheck(lambda e: loss(e, labels, tuples=tuples), (emb,))


def test_gradcheck_sbdl_through_g_and_detach_switch() -> None:
    emb, labels, logits, targets = small_batch()
    flowing = build("sbdl", detach_g=False, lambda_attr=0.3)
    assert torch.autograd.gradcheck(
        lambda e, z: flowing(e, labels, attr_logits=z, attr_targets=targets), (emb, logits)
    )
    # detached g and no BCE: the attribute branch gets no gradient; with g flowing it does
    (detached_grad,) = torch.autograd.grad(
        build("sbdl", lambda_attr=0.0)(emb, labels, attr_logits=logits, attr_targets=targets),
        logits,
        allow_unused=True,
    )
    assert detached_grad is None or torch.count_nonzero(detached_grad) == 0
    (flowing_grad,) = torch.autograd.grad(
        build("sbdl", lambda_attr=0.0, detach_g=False)(emb, labels, attr_logits=logits, attr_targets=targets),
        logits,
    )
    assert torch.count_nonzero(flowing_grad) > 0
    # and the two settings give the same loss value
    a = build("sbdl", detach_g=True)(emb, labels, attr_logits=logits, attr_targets=targets)
    b = build("sbdl", detach_g=False)(emb, labels, attr_logits=logits, attr_targets=targets)
    assert a.item() == pytest.approx(b.item())


# ---------------------------------------------------------------- invariances and degenerate batches


PML_WRAPPERS = ["contrastive-pml", "triplet-pml", "batch-hard-pml", "multi-similarity-pml"]


def test_every_registered_builtin_loss_is_tested() -> None:
    builtin = [n for n in LOSSES.names() if LOSSES.get(n).__module__.startswith("dmlbench.losses.")]
    assert sorted(builtin) == sorted(OUR_LOSSES + PML_WRAPPERS)


@pytest.mark.parametrize("name", OUR_LOSSES + PML_WRAPPERS)
def test_permutation_invariance(name: str) -> None:
    emb, labels, logits, targets = small_batch(5)
    loss = build(name)
    tuples = all_triplets(labels)[::4] if loss.requires_tuples or loss.accepts_tuples else None
    base = call(loss, emb, labels, tuples if loss.requires_tuples else None, logits, targets)
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(9))
    inverse = torch.argsort(perm)  # new position of each old row
    permuted = call(
        loss,
        emb[perm],
        labels[perm],
        inverse[tuples] if loss.requires_tuples else None,
        logits[perm],
        targets[perm],
    )
    assert permuted.item() == pytest.approx(base.item(), abs=1e-12)


DEGENERATE = {
    "single class": (torch.randn(6, 4, dtype=torch.float64), torch.zeros(6, dtype=torch.long)),
    "no positives": (torch.randn(6, 4, dtype=torch.float64), torch.arange(6)),
    "single sample": (torch.randn(1, 4, dtype=torch.float64), torch.zeros(1, dtype=torch.long)),
    "duplicates": (torch.ones(6, 4, dtype=torch.float64), torch.tensor([0, 0, 1, 1, 2, 2])),
    "zero vectors": (torch.zeros(4, 4, dtype=torch.float64), torch.tensor([0, 0, 1, 1])),
}


@pytest.mark.parametrize("case", list(DEGENERATE))
@pytest.mark.parametrize("name", OUR_LOSSES)
def test_degenerate_batches_are_finite_and_flagged(name: str, case: str) -> None:
    emb, labels = DEGENERATE[case]
    emb = emb.clone().requires_grad_()
    loss = build(name)
    tuples = torch.zeros(0, 3, dtype=torch.long) if loss.requires_tuples else None
    value = call(loss, emb, labels, tuples)
    assert torch.isfinite(value)
    value.backward()
    assert emb.grad is None or torch.isfinite(emb.grad).all()
    assert all(math.isfinite(v) for v in loss.last_stats.values())
    if case in ("single class", "no positives", "single sample") and name != "bce-attr":
        assert loss.last_stats["degenerate"] == 1.0
    if case == "duplicates" and name not in ("bce-attr", "triplet"):
        assert loss.last_stats["degenerate"] == 0.0 and loss.last_stats["pos_sim"] == pytest.approx(1.0)


def test_attribute_losses_without_attributes_fail_clearly() -> None:
    for name, params in [("sbdl", {}), ("bce-attr", {}), ("bdl", {"lambda_attr": 0.5})]:
        with pytest.raises(ValueError, match="needs attribute"):
            build(name, **params)(HAND_EMB, HAND_LABELS)


def test_triplet_without_tuples_says_what_to_do() -> None:
    with pytest.raises(ValueError, match="image-wise sampler"):
        build("triplet")(HAND_EMB, HAND_LABELS)


def test_bad_options_fail_at_build() -> None:
    with pytest.raises(ValueError, match="distance"):
        build("batch-hard", distance="manhattan")
    with pytest.raises(ValueError, match="did you mean 'margin'"):
        build("triplet", margn=0.1)


# ---------------------------------------------------------------- agreement with pytorch-metric-learning

PML_CASES = [
    ("multi-similarity", {}),
    ("multi-similarity", {"alpha": 1.0, "beta": 20.0, "base": 0.3, "epsilon": 0.2}),
    ("batch-hard", {}),
    ("batch-hard", {"distance": "cosine", "margin": 0.5, "reduction": "nonzero"}),
    ("contrastive", {}),
    ("contrastive", {"distance": "cosine", "pos_margin": 0.1, "neg_margin": 0.8, "reduction": "mean"}),
]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize(("name", "params"), PML_CASES)
def test_dense_losses_agree_with_pml(name: str, params: dict, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(32, 16, dtype=torch.float64, generator=gen, requires_grad=True)
    labels = torch.randint(0, 6, (32,), generator=gen)
    ours, ref = build(name, **params), build(f"{name}-pml", **params)
    (ours_value := ours(emb, labels)).backward()
    ours_grad, emb.grad = emb.grad.clone(), None
    (ref_value := ref(emb, labels)).backward()
    assert ours_value.item() == pytest.approx(ref_value.item(), abs=1e-5)
    torch.testing.assert_close(ours_grad, emb.grad, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["triplet", "contrastive"])
def test_tuple_losses_agree_with_pml(name: str) -> None:
    gen = torch.Generator().manual_seed(4)
    emb = torch.randn(18, 8, dtype=torch.float64, generator=gen)
    labels = torch.arange(18) % 6
    tuples = all_triplets(labels)[::7]
    for params in ({}, {"distance": "cosine", "reduction": "nonzero"}):
        ours = build(name, **params)(emb, labels, tuples=tuples)
        ref = build(f"{name}-pml", **params)(emb, labels, tuples=tuples)
        assert ours.item() == pytest.approx(ref.item(), abs=1e-5)


def test_float32_large_beta_multi_similarity_is_finite() -> None:
    """The stable log(1 + sum exp) keeps beta=200 finite in float32 (exp(100) would overflow)."""
    emb = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    emb[1] = emb[0] + 0.01 * emb[1]  # a near-duplicate negative pair: s ~ 1, beta (s - base) ~ 100
    labels = torch.arange(16) // 2
    labels[1] = 7
    value = build("multi-similarity", beta=200.0)(emb, labels)
    assert torch.isfinite(value)
