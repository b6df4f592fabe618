"""Pure helpers shared by the loss modules: cosine matrices, pair masks, cheap stats, input checks.

Two batch layouts exist (see `dmlbench.samplers.base.Batch`): *pairs* (every same-label pair is positive,
every different-label pair negative) and *tuples* (image-wise sampling: only the 2T pairs of the
T predefined (anchor, positive, negative) triplets count; SGML Fig. 6a).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_matrix(embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised embeddings and their (B, B) cosine-similarity matrix.

    >>> e, s = cosine_matrix(torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]]))
    >>> [round(v, 4) for v in s[2].tolist()]
    [0.7071, 0.7071, 1.0]
    """
    normed = F.normalize(embeddings, dim=1)
    return normed, normed @ normed.T


def label_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean (B, B) masks of positive pairs (same label, i != j) and negative pairs.

    >>> pos, neg = label_masks(torch.tensor([0, 0, 1]))
    >>> pos.int().tolist(), neg.int().tolist()
    ([[0, 1, 0], [1, 0, 0], [0, 0, 0]], [[0, 0, 1], [0, 0, 1], [1, 1, 0]])
    """
    same = labels[:, None] == labels[None, :]
    neg = ~same
    return same.fill_diagonal_(False), neg


def same_label_pairs(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows and columns of the ordered positive pairs (i != j, same label), without a B x B mask:
    O(B log B + pairs) from the sorted labels, so a dense loss touches its matrix only where it must.

    >>> rows, cols = same_label_pairs(torch.tensor([0, 1, 0, 0]))
    >>> sorted(zip(rows.tolist(), cols.tolist()))
    [(0, 2), (0, 3), (2, 0), (2, 3), (3, 0), (3, 2)]
    """
    order = torch.argsort(labels, stable=True)
    _, counts = torch.unique_consecutive(labels[order], return_counts=True)
    sizes = counts.repeat_interleave(counts)  # per sorted position: the size of its class
    firsts = (counts.cumsum(0) - counts).repeat_interleave(counts)  # ... and its class's first position
    rows = torch.arange(len(labels), device=labels.device).repeat_interleave(sizes)
    within = torch.arange(len(rows), device=labels.device) - (sizes.cumsum(0) - sizes).repeat_interleave(sizes)
    cols = firsts.repeat_interleave(sizes) + within
    keep = rows != cols
    return order[rows[keep]], order[cols[keep]]


def mask_pairs_(matrix: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, value: float) -> torch.Tensor:
    """Set the given pairs and the diagonal of a (B, B) matrix to ``value`` in place (O(pairs))."""
    diag = torch.arange(len(matrix), device=matrix.device)
    matrix[torch.cat([rows, diag]), torch.cat([cols, diag])] = value
    return matrix


def gram_input_grad(
    grad_sim: torch.Tensor, x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
    grad_pos: torch.Tensor | None, *, symmetric: bool,
) -> torch.Tensor:  # fmt: skip
    """dL/dx for S = x @ x.T from dL/dS: ``grad_sim`` (B, B; its listed pairs must be 0, it is changed in
    place) plus ``grad_pos`` on the listed pairs. One GEMM: (G + G.T) @ x, or 2 G @ x when G is symmetric
    (autograd's matmul backward does two)."""
    if grad_pos is not None:
        grad_sim.index_put_((rows, cols), grad_pos, accumulate=True)
    return (grad_sim @ x).mul_(2.0) if symmetric else torch.add(grad_sim, grad_sim.T) @ x


def softplus_sum(z: torch.Tensor) -> torch.Tensor:
    """``F.softplus(z).sum()`` as max(z, 0) + log(1 + exp(-|z|)) with vectorised exp/log (torch's CPU
    softplus and log1p are scalar: as slow as the GEMM at B = 512); -inf entries add 0. Absolute error per
    entry within the dtype's epsilon.

    >>> round(softplus_sum(torch.tensor([0.0, -torch.inf, 30.0, -30.0])).item(), 4)  # log 2 + 30
    30.6931
    """
    tail = z.abs().neg_().exp_().add_(1.0).log_()
    return tail.sum() + z.clamp(min=0).sum()


def check_tuples(tuples: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Validate (T, 3) positions into the batch; returns them as int64 on the same device."""
    if tuples.dim() != 2 or tuples.shape[1] != 3:
        raise ValueError(
            f"tuples must have shape (T, 3) (anchor, positive, negative), got {tuple(tuples.shape)}"
        )
    tuples = tuples.long()
    if tuples.numel() and (int(tuples.min()) < 0 or int(tuples.max()) >= batch_size):
        raise ValueError(f"tuples hold positions outside the batch of {batch_size} embeddings")
    return tuples


def tuple_similarities(normed: torch.Tensor, tuples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine of the T anchor-positive and T anchor-negative pairs (row-wise dots, no B x B matrix).

    >>> e = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]), dim=1)
    >>> ap, an = tuple_similarities(e, torch.tensor([[0, 1, 2]]))
    >>> round(ap.item(), 4), round(an.item(), 4)
    (0.7071, 0.0)
    """
    anchor, positive, negative = tuples.unbind(1)
    a = normed[anchor]
    return (a * normed[positive]).sum(1), (a * normed[negative]).sum(1)


@torch.no_grad()
def pair_similarity_sums(normed: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[positive pairs, negative pairs, sum of positive cosines, sum of negative cosines] over ordered
    pairs i != j, in O(B*D) without the B x B matrix (so a loss's stats cost no extra GEMM):
    the sum of e_i.e_j over a set of rows is ||sum e_i||^2 minus the diagonal terms.

    >>> e = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]), dim=1)
    >>> [round(v, 4) for v in pair_similarity_sums(e, torch.tensor([0, 0, 1])).tolist()]
    [2.0, 4.0, 1.4142, 1.4142]
    """
    _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    norms_sq = (normed * normed).sum(1)
    class_sums = torch.zeros(len(counts), normed.shape[1], dtype=normed.dtype, device=normed.device)
    class_sums.index_add_(0, inverse, normed)
    pos_sum = (class_sums * class_sums).sum() - norms_sq.sum()
    total = normed.sum(0)
    all_sum = (total * total).sum() - norms_sq.sum()
    counts = counts.to(normed.dtype)
    batch = float(len(labels))
    num_pos = (counts * (counts - 1)).sum()
    num_neg = batch * batch - (counts * counts).sum()
    return torch.stack([num_pos, num_neg, pos_sum, all_sum - pos_sum])


def stats_from_sums(sums: torch.Tensor, **extra: torch.Tensor | float) -> dict[str, float]:
    """Plain-float stats (one device sync) from `pair_similarity_sums`-style sums plus extra values."""
    names = list(extra)
    parts = [sums.detach().to(torch.float64).reshape(-1)]
    parts += [
        torch.as_tensor(extra[n], dtype=torch.float64, device=sums.device).detach().reshape(1) for n in names
    ]
    values = torch.cat(parts).tolist()
    num_pos, num_neg, pos_sum, neg_sum = values[:4]
    stats = {
        "pos_pairs": num_pos,
        "neg_pairs": num_neg,
        "pos_sim": pos_sum / num_pos if num_pos else 0.0,
        "neg_sim": neg_sum / num_neg if num_neg else 0.0,
        "degenerate": float(num_pos == 0 or num_neg == 0),
    }
    stats.update(zip(names, values[4:], strict=True))
    return stats


def tuple_sums(sim_ap: torch.Tensor, sim_an: torch.Tensor) -> torch.Tensor:
    """The same four sums as `pair_similarity_sums` for the 2T pairs of predefined triplets."""
    count = torch.tensor(float(len(sim_ap)), dtype=sim_ap.dtype, device=sim_ap.device)
    return torch.stack([count, count, sim_ap.detach().sum(), sim_an.detach().sum()])


def require_attributes(
    loss_name: str,
    attr_logits: torch.Tensor | None,
    attr_targets: torch.Tensor | None,
    *,
    targets: bool = True,
) -> None:
    if attr_logits is None or (targets and attr_targets is None):
        raise ValueError(
            f"loss '{loss_name}' needs attribute logits and targets (attr_logits=, attr_targets=): train it on a "
            "dataset with attributes (e.g. inshop, cub, synthshop) with a model that has an attribute branch"
        )


def attribute_bce(attr_logits: torch.Tensor, attr_targets: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over the (B, K) attribute logits: SGML's L_BCE (eq. 2) divided by K,
    since eq. 2 sums over the K attributes of an image; a weight on it is K times the paper's."""
    return F.binary_cross_entropy_with_logits(attr_logits, attr_targets.to(attr_logits.dtype))


def distance_from_cosine(sim: torch.Tensor, distance: str) -> torch.Tensor:
    """Distance between unit vectors given their cosine (finite gradient at distance 0).

    >>> [round(v, 4) for v in distance_from_cosine(torch.tensor([1.0, 0.0, -1.0]), "euclidean").tolist()]
    [0.0, 1.4142, 2.0]
    >>> distance_from_cosine(torch.tensor([1.0, 0.0, -1.0]), "cosine").tolist()
    [0.0, 1.0, 2.0]
    """
    if distance == "euclidean":
        # Clamped below: duplicates (d = 0) get zero gradient instead of sqrt's infinite one.
        return torch.sqrt((2.0 - 2.0 * sim).clamp_min(1e-12))
    if distance == "cosine":
        return 1.0 - sim
    raise ValueError(f"unknown distance '{distance}'; use 'euclidean' or 'cosine'")


def reduce_losses(
    losses: torch.Tensor, reduction: str, valid: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(reduced loss, number of non-zero terms) over the ``valid`` terms; 0 when nothing to average.

    >>> loss, active = reduce_losses(torch.tensor([0.0, 1.0, 3.0]), "nonzero")
    >>> loss.item(), active.item()
    (2.0, 2)
    >>> reduce_losses(torch.tensor([5.0, 1.0, 3.0]), "mean", torch.tensor([False, True, True]))[0].item()
    2.0
    """
    if valid is not None:
        losses = torch.where(valid, losses, 0.0)  # masked rather than indexed: no data-dependent shapes
    active = (losses > 0).sum()
    if reduction == "mean":
        count = (
            valid.sum().to(losses.dtype) if valid is not None else losses.new_tensor(float(losses.numel()))
        )
    elif reduction == "nonzero":
        count = active.to(losses.dtype)
    else:
        raise ValueError(f"unknown reduction '{reduction}'; use 'mean' or 'nonzero'")
    return losses.sum() / count.clamp_min(1), active


def check_distance_options(distance: str, reduction: str) -> None:
    distance_from_cosine(torch.zeros(1), distance)
    reduce_losses(torch.zeros(1), reduction)
