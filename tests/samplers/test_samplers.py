"""Samplers: structure, validity, determinism and exact resume, over random label distributions."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from dmlbench import losses, samplers
from dmlbench.config import ConfigError, apply_overrides, config_from_dict
from dmlbench.samplers import SAMPLERS
from dmlbench.samplers.category_balanced import split_evenly
from dmlbench.validation.compat import compatibility_error

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
INSHOP_PARTITION = DATA / "inshop" / "list_eval_partition.RECONSTRUCTED.txt"

PROPERTY = settings(max_examples=40, deadline=None)


@st.composite
def label_sets(draw: st.DrawFn, min_classes: int = 2) -> np.ndarray:
    """Shuffled labels with arbitrary (non-contiguous) class ids, class sizes 1..9 (singletons included)."""
    sizes = draw(st.lists(st.integers(1, 9), min_size=min_classes, max_size=25))
    ids = draw(st.lists(st.integers(-1000, 10**6), min_size=len(sizes), max_size=len(sizes), unique=True))
    labels = np.repeat(np.array(ids), sizes)
    perm = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).permutation(len(labels))
    return labels[perm]


def all_batches(sampler: samplers.BatchSampler, epochs: int) -> list[list[np.ndarray]]:
    return [[b.indices.copy() for b in sampler.iter_epoch(e)] for e in range(epochs)]


# --- image-wise -----------------------------------------------------------------------------------


@PROPERTY
@given(labels=label_sets(), seed=st.integers(-(2**40), 2**40), n=st.integers(1, 7), extra=st.integers(0, 3))
def test_image_wise_triplets_are_valid(labels: np.ndarray, seed: int, n: int, extra: int) -> None:
    counts = Counter(labels.tolist())
    if all(c == 1 for c in counts.values()):
        with pytest.raises(ConfigError, match="2\\+ training images"):
            samplers.build("image-wise", labels, seed=seed, anchors_per_batch=n)
        return
    sampler = samplers.build("image-wise", labels, seed=seed, anchors_per_batch=n)
    eligible = {i for i, y in enumerate(labels.tolist()) if counts[y] >= 2}
    assert len(sampler) == -(-len(eligible) // n)
    anchors_seen: set[int] = set()
    for batch in sampler.iter_epoch(0):
        assert batch.indices.shape == (3 * n,) and batch.tuples is not None
        assert batch.tuples.tolist() == [[i, n + i, 2 * n + i] for i in range(n)]
        a, p, neg = (batch.indices[batch.tuples[:, k]] for k in range(3))
        assert (labels[a] == labels[p]).all() and (a != p).all()
        assert (labels[a] != labels[neg]).all()
        assert set(a.tolist()) <= eligible  # singletons are never anchors
        anchors_seen |= set(a.tolist())
    assert anchors_seen == eligible  # the default epoch is one pass over the eligible anchors
    stats = sampler.epoch_stats(0)
    assert stats["singleton_images"] == len(labels) - len(eligible)
    assert stats["positives_per_anchor"] == 1.0 and stats["fraction_anchors_covered"] == 1.0


def test_image_wise_positives_and_negatives_are_uniform() -> None:
    # Class 0 has 4 images, the rest 3 classes of sizes 1, 2, 5: negatives of class-0 anchors must be
    # uniform over the 8 other images, positives uniform over the 3 other class-0 images.
    labels = np.array([0, 0, 0, 0, 1, 2, 2, 3, 3, 3, 3, 3])
    sampler = samplers.build("image-wise", labels, seed=5, anchors_per_batch=11, batches_per_epoch=4000)
    plan = sampler.plan(0)
    trip = plan.indices.reshape(-1, 3, 11)
    a, p, neg = trip[:, 0].ravel(), trip[:, 1].ravel(), trip[:, 2].ravel()
    anchor0 = a == 0
    neg_counts = np.bincount(neg[anchor0], minlength=12)
    assert (neg_counts[:4] == 0).all()
    assert chisquare(neg_counts[4:]).pvalue > 1e-4
    pos_counts = np.bincount(p[anchor0], minlength=4)
    assert pos_counts[0] == 0 and chisquare(pos_counts[1:]).pvalue > 1e-4
    # Singleton 4 is never an anchor but is drawn as a negative.
    assert 4 not in set(a.tolist()) and 4 in set(neg.tolist())
    # A long epoch chains passes: every eligible image is an anchor equally often (44000 / 11).
    assert np.bincount(a, minlength=12)[[0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11]].tolist() == [4000] * 11


# --- batch-wise -----------------------------------------------------------------------------------


@PROPERTY
@given(
    labels=label_sets(),
    seed=st.integers(0, 2**63),
    p=st.integers(2, 8),
    k=st.integers(2, 5),
    policy=st.sampled_from(["replace", "take-all"]),
)
def test_batch_wise_has_the_promised_pk_structure(
    labels: np.ndarray, seed: int, p: int, k: int, policy: str
) -> None:
    counts = Counter(labels.tolist())
    sampler = samplers.build(
        "batch-wise", labels, seed=seed, classes_per_batch=p, images_per_class=k, small_class_policy=policy
    )
    p_eff = min(p, len(counts))
    assert len(sampler) == -(-len(labels) // (p * k))
    classes_seen: set[int] = set()
    for batch in sampler.iter_epoch(0):
        assert batch.tuples is None
        per_class: dict[int, list[int]] = {}
        for i in batch.indices.tolist():
            per_class.setdefault(int(labels[i]), []).append(i)
        assert len(per_class) == p_eff  # P distinct classes, none dropped for being small
        for y, images in per_class.items():
            expected = k if policy == "replace" else min(k, counts[y])
            assert len(images) == expected
            assert len(set(images)) == min(k, counts[y])  # distinct when possible; all of a small class
        if policy == "replace":
            assert len(batch.indices) == p_eff * k
        classes_seen |= set(per_class)
    if len(sampler) * p_eff >= len(counts):
        assert classes_seen == set(counts)  # a pass covers every class, singletons included


@PROPERTY
@given(labels=label_sets(), seed=st.integers(0, 2**31), policy=st.sampled_from(["replace", "take-all"]))
def test_batch_wise_stats_match_a_brute_force_count(labels: np.ndarray, seed: int, policy: str) -> None:
    sampler = samplers.build(
        "batch-wise", labels, seed=seed, classes_per_batch=3, images_per_class=3, small_class_policy=policy
    )
    positives, positions, classes, seen = 0, 0, [], set()
    for batch in sampler.iter_epoch(0):
        idx = batch.indices.tolist()
        for i in idx:
            positives += len({j for j in idx if labels[j] == labels[i] and j != i})
        positions += len(idx)
        classes.append(len(set(labels[idx].tolist())))
        seen |= set(idx)
    stats = sampler.epoch_stats(0)
    assert stats["positives_per_anchor"] == pytest.approx(positives / positions)
    assert stats["classes_per_batch"] == pytest.approx(np.mean(classes))
    assert stats["fraction_images_seen"] == pytest.approx(len(seen) / len(labels))
    assert stats["images_per_batch"] == pytest.approx(positions / len(sampler))


def test_batch_wise_cycles_through_a_class_before_repeating() -> None:
    labels = np.repeat([0, 1, 2], [10, 10, 10])
    sampler = samplers.build(
        "batch-wise", labels, seed=0, classes_per_batch=3, images_per_class=4, batches_per_epoch=5
    )
    per_class_order = [
        [i for b in sampler.iter_epoch(0) for i in b.indices.tolist() if labels[i] == c] for c in range(3)
    ]
    for order in per_class_order:  # 20 draws of a 10-image class: two full cycles
        assert sorted(order[:10]) == list(range(order[0] // 10 * 10, order[0] // 10 * 10 + 10))
        assert sorted(order[10:]) == sorted(order[:10])


# --- category-balanced ----------------------------------------------------------------------------


@PROPERTY
@given(labels=label_sets(), seed=st.integers(0, 2**31), g=st.integers(1, 3), num_groups=st.integers(1, 5))
def test_category_balanced_batches_come_from_few_categories(
    labels: np.ndarray, seed: int, g: int, num_groups: int
) -> None:
    # Category of a class = a hash of its id, so every image of a class shares one category.
    groups = np.array([f"cat{y % num_groups}" for y in labels.tolist()])
    sampler = samplers.build(
        "category-balanced", labels, seed=seed, groups=groups, categories_per_batch=g, classes_per_batch=6,
        images_per_class=2,
    )  # fmt: skip
    present = len(set(groups.tolist()))
    for batch in sampler.iter_epoch(0):
        cats = Counter(groups[batch.indices].tolist())
        assert 1 <= len(cats) <= min(g, present)
        per_class = Counter(labels[batch.indices].tolist())
        assert set(per_class.values()) == {2}  # replace policy: K positions per class
        assert len(per_class) <= 6
    assert sampler.epoch_stats(0)["mixed_category_classes"] == 0


def test_category_balanced_without_groups_says_the_dataset_has_no_categories() -> None:
    with pytest.raises(ConfigError, match="no categories"):
        samplers.build("category-balanced", np.array([0, 0, 1, 1]), seed=0)


def test_split_evenly_respects_capacities_and_total() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        caps = rng.integers(0, 12, rng.integers(1, 6))
        total = int(rng.integers(0, 40))
        parts = split_evenly(total, caps)
        assert (parts <= caps).all() and parts.sum() == min(total, caps.sum())
        free = parts < caps  # parts that could still grow are within 1 of each other and the largest
        if free.any():
            assert parts[free].max() - parts[free].min() <= 1 and parts[free].min() >= parts.max() - 1


# --- determinism and resume -------------------------------------------------------------------------


SAMPLER_CASES = [
    ("image-wise", {"anchors_per_batch": 3}),
    ("batch-wise", {"classes_per_batch": 3, "images_per_class": 2}),
    ("batch-wise", {"classes_per_batch": 4, "images_per_class": 3, "small_class_policy": "take-all"}),
    ("category-balanced", {"categories_per_batch": 2, "classes_per_batch": 4, "images_per_class": 2}),
]


@pytest.mark.parametrize(("name", "params"), SAMPLER_CASES)
@PROPERTY
@given(labels=label_sets(min_classes=3), seed=st.integers(0, 2**31), data=st.data())
def test_same_seed_same_batches_and_exact_resume(
    name: str, params: dict, labels: np.ndarray, seed: int, data: st.DataObject
) -> None:
    if name == "image-wise" and max(Counter(labels.tolist()).values()) < 2:
        return  # covered by the image-wise property test
    groups = labels % 3

    def make(s: int) -> samplers.BatchSampler:
        return samplers.build(name, labels, seed=s, groups=groups, **params)

    uninterrupted = all_batches(make(seed), 3)
    assert _same(all_batches(make(seed), 3), uninterrupted)  # same seed, same batches

    # Interrupt in epoch 1 after `stop` batches, save the state, resume in a fresh sampler built with
    # another seed (the state's seed wins) that never iterated epoch 0.
    first = make(seed)
    list(first.iter_epoch(0))
    stop = data.draw(st.integers(0, len(first)))
    it = first.iter_epoch(1)
    for _ in range(stop):
        next(it)
    state = json.loads(json.dumps(first.state_dict()))  # plain JSON types: safe in a weights_only checkpoint
    resumed = make(seed + 1)
    resumed.load_state_dict(state)
    epoch, start = resumed.resume_point()
    assert (epoch, start) == ((1, stop) if stop < len(first) else (2, 0))
    rest = [b.indices.copy() for b in resumed.iter_epoch(epoch, start)]
    rest += [b.indices.copy() for e in range(epoch + 1, 3) for b in resumed.iter_epoch(e)]
    expected = [b for e in range(1, 3) for b in uninterrupted[e]][stop:]
    assert _same(rest, expected)


def _same(a: list, b: list) -> bool:
    """Equal sequences of index arrays (nested per epoch or flat)."""
    flat_a, flat_b = _flatten(a), _flatten(b)
    return len(flat_a) == len(flat_b) and all(
        np.array_equal(x, y) for x, y in zip(flat_a, flat_b, strict=True)
    )


def _flatten(batches: list) -> list[np.ndarray]:
    return [x for item in batches for x in ([item] if isinstance(item, np.ndarray) else item)]


@pytest.mark.parametrize(("name", "params"), SAMPLER_CASES)
def test_other_seed_or_epoch_gives_other_batches(name: str, params: dict) -> None:
    labels = np.repeat(np.arange(30), 5)
    base = samplers.build(name, labels, seed=0, groups=labels % 4, **params)
    other = samplers.build(name, labels, seed=1, groups=labels % 4, **params)
    assert not _same(all_batches(base, 1), all_batches(other, 1))
    assert not _same([b.indices for b in base.iter_epoch(0)], [b.indices for b in base.iter_epoch(1)])


def test_resume_onto_other_data_or_params_is_refused() -> None:
    labels = np.repeat(np.arange(10), 3)
    state = samplers.build("batch-wise", labels, seed=0, classes_per_batch=4).state_dict()
    with pytest.raises(ValueError, match="classes_per_batch"):
        samplers.build("batch-wise", labels, seed=0, classes_per_batch=5).load_state_dict(state)
    with pytest.raises(ValueError, match="fingerprint"):
        samplers.build("batch-wise", labels[::-1].copy(), seed=0, classes_per_batch=4).load_state_dict(state)


def test_batches_belong_to_the_caller_and_start_is_checked() -> None:
    sampler = samplers.build(
        "image-wise", np.repeat(np.arange(6), 2), seed=0, anchors_per_batch=2, batches_per_epoch=3
    )
    first = [b.indices.copy() for b in sampler.iter_epoch(0)]
    for batch in sampler.iter_epoch(0):  # editing a batch must not change the epoch's replay
        assert batch.indices.flags.writeable and batch.tuples is not None and batch.tuples.flags.writeable
        batch.indices[:] = -1
        batch.tuples[:] = -1
    assert _same([b.indices for b in sampler.iter_epoch(0)], first)
    assert next(sampler.iter_epoch(0)).tuples.tolist() == [[0, 2, 4], [1, 3, 5]]
    with pytest.raises(ValueError, match="outside epoch"):
        sampler.iter_epoch(0, start=len(sampler) + 1)


def test_explicit_epoch_length() -> None:
    labels = np.repeat(np.arange(8), 4)
    assert len(samplers.build("batch-wise", labels, seed=0, batches_per_epoch=7)) == 7
    assert len(list(samplers.build("image-wise", labels, seed=0, batches_per_epoch=9).iter_epoch(3))) == 9


# --- configuration ----------------------------------------------------------------------------------


def test_bad_parameters_fail_with_clear_messages() -> None:
    labels = np.repeat(np.arange(4), 3)
    with pytest.raises(ConfigError, match="did you mean 'take-all'"):
        samplers.build("batch-wise", labels, seed=0, small_class_policy="take_all")
    with pytest.raises(ConfigError, match="positive pairs"):
        samplers.build("batch-wise", labels, seed=0, images_per_class=1)
    with pytest.raises(ConfigError, match="at least 2 training classes"):
        samplers.build("image-wise", np.zeros(5, dtype=int), seed=0)
    with pytest.raises(ValueError, match="did you mean 'anchors_per_batch'"):
        samplers.build("image-wise", labels, seed=0, anchor_per_batch=3)
    assert SAMPLERS.params("batch-wise") == {
        "classes_per_batch": 41,
        "images_per_class": 4,
        "small_class_policy": "replace",
    }
    assert SAMPLERS.params("image-wise") == {"anchors_per_batch": 60}


@pytest.mark.parametrize(("name", "params"), SAMPLER_CASES)
def test_float_and_string_labels_are_classes_by_exact_equality(name: str, params: dict) -> None:
    # Casting to int64 made 0.1, 0.2, 0.3 one class ("needs at least 2 training classes"), merged
    # "7" and "07", and failed on "a". The batches equal those of the same classes as integers.
    codes = np.random.default_rng(3).permutation(np.repeat(np.arange(6), 5))
    groups = codes % 3
    want = all_batches(samplers.build(name, codes, seed=11, groups=groups, **params), 2)
    for labels in (
        np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])[codes],
        np.array(["07", "7", "a", "b", "c", "d"])[codes],
        np.array(["07", "7", "a", "b", "c", "d"], dtype=object)[codes],
    ):
        sampler = samplers.build(name, labels, seed=11, groups=groups, **params)
        assert sampler.labels.tolist() == codes.tolist()
        assert _same(all_batches(sampler, 2), want)


def test_unusable_labels_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="NaN"):
        samplers.build("batch-wise", np.array([0.5, 0.5, np.nan, 1.5]), seed=0)
    with pytest.raises(ConfigError, match="1-D"):
        samplers.build("batch-wise", np.zeros((4, 2), dtype=int), seed=0)


def test_incompatible_loss_and_sampler_fail_at_config_time() -> None:
    # The trainer's one check (dmlbench.validation.compat) reads the sampler's layout and the loss's flags.
    layouts = {name: SAMPLERS.get(name).layout for name in SAMPLERS.names()}
    assert layouts == {"batch-wise": "pairs", "category-balanced": "pairs", "image-wise": "tuples"}
    assert "cannot use the image-wise" in compatibility_error("multi-similarity", layouts["image-wise"], 0)
    assert "trains on predefined triplets" in compatibility_error("triplet", layouts["batch-wise"], 0)
    for sampler in SAMPLERS.names():
        assert compatibility_error("bdl", layouts[sampler], 0) is None  # 2N pairs image-wise, all pairs P x K
    assert compatibility_error("batch-hard", layouts["category-balanced"], 0) is None
    assert compatibility_error("triplet", layouts["image-wise"], 0) is None


def test_sampler_is_a_grid_axis_of_the_config() -> None:
    # The SGML Table III comparison: one base config, the sampler name swept (params reset on switch).
    base = config_from_dict({"sampler": {"name": "image-wise", "params": {"anchors_per_batch": 4}}})
    labels = np.repeat(np.arange(50), 3)
    layouts = {}
    for name in ("image-wise", "batch-wise"):
        cfg = apply_overrides(base, [f"sampler={name}"])
        s = cfg.sampler
        sampler = samplers.build(
            s.name, labels, seed=cfg.seed, batches_per_epoch=s.batches_per_epoch, **s.params
        )
        layouts[name] = (sampler.layout, len(next(sampler.iter_epoch(0)).indices))
    # image-wise keeps its 4 anchors (3 x 4 positions); batch-wise starts from its defaults (41 x 4).
    assert layouts == {"image-wise": ("tuples", 12), "batch-wise": ("pairs", 164)}


# --- the real In-Shop training label distribution -------------------------------------------------


def _inshop_train() -> tuple[np.ndarray, np.ndarray]:
    if not INSHOP_PARTITION.is_file():
        pytest.skip(f"In-Shop partition sample not found at {INSHOP_PARTITION} (shared data folder absent)")
    rows = [line.split() for line in INSHOP_PARTITION.read_text().splitlines()[2:]]
    train = [r for r in rows if r[2] == "train"]
    labels = np.array([int(r[1].removeprefix("id_")) for r in train])
    groups = np.array(["/".join(r[0].split("/")[1:3]) for r in train])  # e.g. WOMEN/Dresses
    return labels, groups


def test_real_inshop_distribution() -> None:
    labels, groups = _inshop_train()
    assert (len(labels), len(set(labels.tolist()))) == (25882, 3997)
    sizes = Counter(labels.tolist())
    small = sum(1 for c in sizes.values() if c < 4)
    assert small > 0  # the case the small-class policy exists for

    replace = samplers.build("batch-wise", labels, seed=0)
    stats = replace.epoch_stats(0)
    assert len(replace) == 158 and all(len(b.indices) == 164 for b in replace.iter_epoch(0))
    assert stats["classes_per_batch"] == 41 and stats["short_class_slots"] > 0
    take_all = samplers.build("batch-wise", labels, seed=0, small_class_policy="take-all").epoch_stats(0)
    assert take_all["images_per_batch"] < 164 and take_all["repeated_images_per_batch"] == 0

    image_wise = samplers.build("image-wise", labels, seed=0).epoch_stats(0)
    assert image_wise["singleton_images"] == sum(1 for c in sizes.values() if c == 1)

    # 52 real training items sit in two category folders (e.g. Cardigans and Sweaters): they belong to
    # their majority category and are counted; every other image of a batch is from <= 2 categories.
    categories_of: dict[int, set[str]] = {}
    for y, g in zip(labels.tolist(), groups.tolist(), strict=True):
        categories_of.setdefault(y, set()).add(g)
    mixed = {y for y, cats in categories_of.items() if len(cats) > 1}
    hard = samplers.build("category-balanced", labels, seed=0, groups=groups)
    for batch in hard.iter_epoch(0):
        single = [i for i in batch.indices.tolist() if labels[i] not in mixed]
        assert len(set(groups[single].tolist())) <= 2
    assert hard.epoch_stats(0)["mixed_category_classes"] == len(mixed) == 52


@pytest.mark.parametrize(("name", "params"), SAMPLER_CASES)
def test_every_sampler_logs_the_common_epoch_stats(name: str, params: dict) -> None:
    labels = np.repeat(np.arange(12), [1, 2, 3] * 4)
    stats = samplers.build(name, labels, seed=0, groups=labels % 3, **params).epoch_stats(0)
    assert {"fraction_images_seen", "classes_per_batch", "positives_per_anchor"} <= set(stats)
    assert all(isinstance(v, float) for v in stats.values())
    assert 0 < stats["fraction_images_seen"] <= 1


def test_real_losses_use_the_batch_layout() -> None:
    # BDL (SGML's loss) on an image-wise batch uses exactly its N positive + N negative predefined
    # pairs; on a batch-wise batch every ordered pair of the batch (brute-force count).
    labels = np.repeat(np.arange(10), 3)
    bdl = losses.build("bdl")
    batch = next(samplers.build("image-wise", labels, seed=0, anchors_per_batch=5).iter_epoch(0))
    emb = torch.randn(len(batch.indices), 8)
    bdl(emb, torch.from_numpy(labels[batch.indices]), tuples=torch.from_numpy(batch.tuples))
    assert (bdl.last_stats["pos_pairs"], bdl.last_stats["neg_pairs"]) == (5, 5)
    batch = next(
        samplers.build("batch-wise", labels, seed=0, classes_per_batch=3, images_per_class=3).iter_epoch(0)
    )
    y = labels[batch.indices]
    same = y[:, None] == y[None, :]
    bdl(torch.randn(len(y), 8), torch.from_numpy(y))
    assert bdl.last_stats["pos_pairs"] == same.sum() - len(y) and bdl.last_stats["neg_pairs"] == (~same).sum()
    # The registered losses' flags decide which sampler they can read (SGML Table III uses bdl/sbdl).
    for loss, ok in {"bdl": {"image-wise", "batch-wise"}, "sbdl": {"image-wise", "batch-wise"},
                     "multi-similarity": {"batch-wise"}, "triplet": {"image-wise"}}.items():  # fmt: skip
        for sampler in ("image-wise", "batch-wise"):
            problem = compatibility_error(loss, SAMPLERS.get(sampler).layout, 32)
            assert (problem is None) == (sampler in ok), (loss, sampler, problem)
