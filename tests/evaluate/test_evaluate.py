"""Evaluation engine: hand-computed cases, a brute-force NumPy reference, PML cross-checks, backends."""

from __future__ import annotations

import json
import math
from collections import defaultdict

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dmlbench.evaluate import (
    count_relevant,
    evaluate_layers,
    faiss_available,
    knn,
    resolve_backend,
    retrieval_metrics,
)
from dmlbench.perf.bench_eval import clustered_embeddings, run_bench

CPU_BACKENDS = ["torch"] + (["faiss-cpu"] if faiss_available() else [])
SMALL_CHUNK = 4 * 20 * 60  # ~20 query rows per chunk for galleries of ~60: a few chunk boundaries


# ----------------------------------------------------------------------------- brute-force reference


def reference_ranking(q: np.ndarray, g: np.ndarray, leave_one_out: bool) -> list[np.ndarray]:
    """Full ranking per query in float64: similarity desc, ties by lower gallery index, self removed."""
    sims = q.astype(np.float64) @ g.astype(np.float64).T
    rankings = []
    for i, row in enumerate(sims):
        order = np.lexsort((np.arange(len(row)), -row))
        rankings.append(order[order != i] if leave_one_out else order)
    return rankings


def reference_metrics(q, q_labels, g=None, g_labels=None, ks=(1, 10), q_attrs=None, g_attrs=None, normalize=True):
    """Every metric by its literal definition, one query at a time."""
    loo = g is None
    if loo:
        g, g_labels, g_attrs = q, q_labels, q_attrs
    q, g = np.asarray(q, np.float64), np.asarray(g, np.float64)
    if normalize:
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        g = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    per_query: dict[str, list[float]] = {}
    excluded = 0
    for i, ranking in enumerate(reference_ranking(q, g, loo)):
        rel = np.asarray(g_labels)[ranking] == q_labels[i]
        r = int(rel.sum())
        if r == 0:
            excluded += 1
            continue
        values: dict[str, float] = {}
        for k in ks:
            kk = min(k, len(ranking))
            values[f"recall@{k}"] = float(rel[:kk].any())
            values[f"precision@{k}"] = rel[:kk].sum() / kk
        values["r_precision"] = rel[:r].sum() / r
        values["map@r"] = sum(rel[j] * rel[: j + 1].sum() / (j + 1) for j in range(r)) / r
        if q_attrs is not None:
            a = np.asarray(q_attrs[i], np.float64)
            for k in ks:
                wrong = ranking[~rel][:k]
                cos = []
                for j in wrong:
                    b = np.asarray(g_attrs[j], np.float64)
                    norm = np.linalg.norm(a) * np.linalg.norm(b)
                    cos.append(a @ b / norm if norm > 0 else 0.0)
                values[f"attr_sim@{k}"] = float(np.mean(cos)) if cos else math.nan
        for key, v in values.items():
            per_query.setdefault(key, []).append(v)
    out: dict[str, float | int] = {}
    for key, vals in per_query.items():
        finite = [v for v in vals if not math.isnan(v)]
        out[key] = float(np.mean(finite)) if finite else math.nan
    out["num_queries"] = len(q) - excluded
    out["excluded_queries"] = excluded
    return out


def tie_heavy_data(n: int, num_classes: int, seed: int, dim: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectors with four entries in {-1, 1}: normalised entries are +-0.5 and every cosine is a
    multiple of 1/4, exact in float32 and float64, so ties abound and no rounding can break them.
    A third of the rows are exact duplicates of earlier rows."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, dim), np.float32)
    for row in x:
        row[rng.choice(dim, 4, replace=False)] = rng.choice([-1.0, 1.0], 4)
    dup = rng.choice(n, n // 3, replace=False)
    x[dup] = x[rng.integers(0, n, len(dup))]
    labels = rng.integers(0, num_classes, n)
    attrs = rng.integers(0, 2, (n, 5)).astype(np.float32)  # includes all-zero attribute rows
    return x, labels, attrs


def clustered_data(n: int, num_classes: int, seed: int, dim: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, n)
    centers = rng.standard_normal((num_classes, dim))
    return (centers[labels] + 0.9 * rng.standard_normal((n, dim))).astype(np.float32), labels


def assert_metrics_equal(got: dict, want: dict, tol: float = 1e-9) -> None:
    assert got.keys() == want.keys()
    for key in want:
        if isinstance(want[key], float) and math.isnan(want[key]):
            assert math.isnan(got[key]), key
        else:
            assert got[key] == pytest.approx(want[key], abs=tol), key


# ----------------------------------------------------------------------------- hand-computed cases

# Query [1, 0] of class 0 against a gallery ranked (cosine): g0 1.0 (class 1), g1 0.8 (class 0),
# g2 0.0 (class 0), g3 -1.0 (class 1). R = 2.
HAND_GALLERY = [[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]]
HAND_LABELS = [1, 0, 0, 1]


def hand_metrics(**kw) -> dict:
    return retrieval_metrics([[1.0, 0.0]], [0], HAND_GALLERY, HAND_LABELS, backend="torch", **kw)


def test_recall_and_precision_at_k_hand_computed():
    m = hand_metrics(ks=(1, 2, 3, 4))
    assert [m[f"recall@{k}"] for k in (1, 2, 3, 4)] == [0.0, 1.0, 1.0, 1.0]
    assert [m[f"precision@{k}"] for k in (1, 2, 3, 4)] == pytest.approx([0.0, 1 / 2, 2 / 3, 2 / 4])


def test_r_precision_and_map_at_r_hand_computed():
    m = hand_metrics(ks=(1,))
    assert m["r_precision"] == pytest.approx(1 / 2)  # one of the R=2 nearest is relevant
    assert m["map@r"] == pytest.approx((0 + 1 / 2) / 2)  # relevant at rank 2 only: P(2) = 1/2
    # Ranked (pos, neg, pos) with R = 2: R-precision 1/2, MAP@R = (1/1 + 0) / 2 (rank 3 is past R).
    m = retrieval_metrics([[1.0, 0.0]], [0], [[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]], [0, 1, 0], ks=(3,), backend="torch")
    assert (m["r_precision"], m["map@r"], m["precision@3"]) == pytest.approx((1 / 2, 1 / 2, 2 / 3))


def test_k_beyond_gallery_is_clamped():
    m = hand_metrics(ks=(100,))
    assert m["recall@100"] == 1.0
    assert m["precision@100"] == pytest.approx(2 / 4)  # divided by the clamped K = 4


def test_ties_go_to_the_lower_gallery_index():
    # Two identical gallery vectors, different classes: the lower index wins rank 1.
    gallery = [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
    assert retrieval_metrics([[1.0, 0.0]], [0], gallery, [0, 1, 1], ks=(1,), backend="torch")["recall@1"] == 1.0
    assert retrieval_metrics([[1.0, 0.0]], [0], gallery, [1, 0, 0], ks=(1,), backend="torch")["recall@1"] == 0.0


def test_leave_one_out_excludes_self_by_index_not_first_neighbour():
    # Rows 0 and 1 are identical; row 1 is row 0's nearest even though row 0 ties with itself.
    x = [[1.0, 0.0], [1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]
    m = retrieval_metrics(x, [0, 0, 1, 1], ks=(1,), backend="torch")
    assert m["recall@1"] == pytest.approx(1.0)
    assert knn(torch.tensor(x), None, 3, backend="torch").tolist() == [[1, 2, 3], [0, 2, 3], [3, 0, 1], [2, 0, 1]]


def test_queries_without_relevant_items_are_excluded_and_counted():
    m = retrieval_metrics([[1.0, 0.0], [0.0, 1.0]], [0, 7], HAND_GALLERY, HAND_LABELS, ks=(1,), backend="torch")
    assert (m["num_queries"], m["excluded_queries"]) == (1, 1)
    assert m["map@r"] == pytest.approx(0.25)  # only the class-0 query counts
    m = retrieval_metrics([[1.0, 0.0]], [9], HAND_GALLERY, HAND_LABELS, ks=(1,), backend="torch")
    assert (m["num_queries"], m["excluded_queries"]) == (0, 1) and math.isnan(m["recall@1"])


def test_attr_sim_averages_nearest_nonmatching_items():
    # Ranking g0 (neg), g1 (pos), g2 (pos), g3 (neg): the non-matching items in order are g0, g3.
    attrs_q = [[1.0, 1.0, 0.0]]
    attrs_g = [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]
    m = hand_metrics(ks=(1, 2, 5), query_attrs=attrs_q, gallery_attrs=attrs_g)
    assert m["attr_sim@1"] == pytest.approx(1 / math.sqrt(2))  # cos([1,1,0], [1,0,0])
    assert m["attr_sim@2"] == pytest.approx((1 / math.sqrt(2) + 1.0) / 2)
    assert m["attr_sim@5"] == pytest.approx(m["attr_sim@2"])  # only two non-matching items exist


def test_count_relevant_handles_absent_labels():
    assert count_relevant(np.array([3, 4]), np.array([1, 2]), leave_one_out=False).tolist() == [0, 0]


# Each row's nearest neighbour (leave-one-out) is the next row of the *other* label: recall@1 is 0.
PAIRED_X = [[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]]


def test_float_labels_are_compared_exactly():
    # Casting to int made 0.1 and 0.2 one class: every nearest neighbour a hit (recall@1 1.0).
    m = retrieval_metrics(PAIRED_X, [0.1, 0.2, 0.1, 0.2], ks=(1,), backend="torch")
    assert m == retrieval_metrics(PAIRED_X, [1, 2, 1, 2], ks=(1,), backend="torch")
    assert m["recall@1"] == 0.0 and m["num_queries"] == 4


def test_string_labels_are_compared_exactly():
    m = retrieval_metrics(PAIRED_X, ["7", "07", "7", "07"], ks=(1,), backend="torch")  # int() merged them
    assert m["recall@1"] == 0.0 and m["num_queries"] == 4
    m = retrieval_metrics(PAIRED_X, np.array(["a", "b", "a", "b"], dtype=object), ks=(1,), backend="torch")
    assert m == retrieval_metrics(PAIRED_X, [1, 2, 1, 2], ks=(1,), backend="torch")
    # Query and gallery labels share one mapping: "b" matches "b" across the two arrays.
    m = retrieval_metrics([[1.0, 0.0]], ["b"], [[1.0, 0.0], [0.9, 0.1]], ["a", "b"], ks=(1, 2), backend="torch")
    assert (m["recall@1"], m["recall@2"], m["r_precision"]) == (0.0, 1.0, 0.0)


def test_unusable_labels_fail_with_the_reason():
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(PAIRED_X, [0.1, math.nan, 0.1, 0.2], backend="torch")
    with pytest.raises(ValueError, match="mix numbers and strings"):
        retrieval_metrics([[1.0, 0.0]], [1], [[1.0, 0.0]], ["1"], backend="torch")
    with pytest.raises(ValueError, match="1-D"):
        retrieval_metrics(PAIRED_X, [[0], [1], [0], [1]], backend="torch")


# ----------------------------------------------------------------------------- brute-force reference


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_reference_on_tied_duplicated_data_leave_one_out(backend, seed):
    x, labels, attrs = tie_heavy_data(60, 8, seed)
    ks = (1, 2, 4, 8)  # well below the gallery size, so the top-k path (not a full sort) runs
    got = retrieval_metrics(x, labels, ks=ks, query_attrs=attrs, backend=backend, chunk_bytes=SMALL_CHUNK)
    assert_metrics_equal(got, reference_metrics(x, labels, ks=ks, q_attrs=attrs))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_matches_reference_on_tied_duplicated_data_query_gallery(backend):
    x, labels, attrs = tie_heavy_data(90, 10, seed=3)
    q, g = slice(0, 35), slice(35, None)
    ks = (1, 5, 10)
    got = retrieval_metrics(
        x[q], labels[q], x[g], labels[g], ks=ks, query_attrs=attrs[q], gallery_attrs=attrs[g],
        backend=backend, chunk_bytes=SMALL_CHUNK,
    )  # fmt: skip
    want = reference_metrics(x[q], labels[q], x[g], labels[g], ks=ks, q_attrs=attrs[q], g_attrs=attrs[g])
    assert_metrics_equal(got, want)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_matches_reference_on_continuous_data(backend):
    x, labels = clustered_data(300, 25, seed=4)
    ks = (1, 10, 20)
    assert_metrics_equal(retrieval_metrics(x, labels, ks=ks, backend=backend), reference_metrics(x, labels, ks=ks))


def test_inner_product_ranking_without_normalisation():
    rng = np.random.default_rng(5)
    x = rng.integers(-3, 4, (50, 6)).astype(np.float32)  # integer dot products: exact, many ties
    labels = rng.integers(0, 6, 50)
    got = retrieval_metrics(x, labels, ks=(1, 3), normalize=False, backend="torch", chunk_bytes=4 * 50 * 6)
    assert_metrics_equal(got, reference_metrics(x, labels, ks=(1, 3), normalize=False))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 25),
    k=st.integers(1, 30),
    seed=st.integers(0, 2**16),
    loo=st.booleans(),
)
def test_knn_equals_stable_full_sort(n, k, seed, loo):
    rng = np.random.default_rng(seed)
    q = rng.integers(-2, 3, (n, 3)).astype(np.float32)
    g = q if loo else rng.integers(-2, 3, (n + 3, 3)).astype(np.float32)
    want = [r[: min(k, len(r))].tolist() for r in reference_ranking(q, g, loo)]
    for backend in CPU_BACKENDS:
        got = knn(torch.from_numpy(q), None if loo else torch.from_numpy(g), k, backend=backend, chunk_bytes=4 * 3 * len(g))
        assert got.tolist() == want, backend


# ----------------------------------------------------------------------------- PML cross-check


@pytest.mark.parametrize("protocol", ["leave-one-out", "query-gallery"])
def test_agrees_with_pml_accuracy_calculator(protocol):
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    x, labels = clustered_data(400, 40, seed=6)
    labels[:3] = [1000, 1001, 1002]  # singleton classes: queries with no relevant item
    x = x / np.linalg.norm(x, axis=1, keepdims=True)  # PML ranks by L2: same order on unit vectors
    calc = AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
        k="max_bin_count",
        device=torch.device("cpu"),
    )
    if protocol == "leave-one-out":
        pml = calc.get_accuracy(x, labels)
        ours = retrieval_metrics(x, labels, ks=(1,), backend="torch")
    else:
        pml = calc.get_accuracy(x[:150], labels[:150], x[150:], labels[150:])
        ours = retrieval_metrics(x[:150], labels[:150], x[150:], labels[150:], ks=(1,), backend="torch")
    assert ours["excluded_queries"] == 3
    assert ours["precision@1"] == pytest.approx(pml["precision_at_1"], abs=1e-9)
    assert ours["r_precision"] == pytest.approx(pml["r_precision"], abs=1e-9)
    assert ours["map@r"] == pytest.approx(pml["mean_average_precision_at_r"], abs=1e-9)


# ----------------------------------------------------------------------------- backends, layers, errors


@pytest.mark.skipif(not faiss_available(), reason="faiss is not installed")
def test_backends_return_identical_neighbours():
    x, _, _ = tie_heavy_data(80, 5, seed=7)
    xt = torch.from_numpy(x)
    for k in (1, 5, 79):
        a = knn(xt, None, k, backend="torch", chunk_bytes=SMALL_CHUNK)
        b = knn(xt, None, k, backend="faiss-cpu", chunk_bytes=SMALL_CHUNK)
        assert torch.equal(a, b), k
        assert torch.equal(knn(xt[:30], xt[30:], k, backend="torch"), knn(xt[:30], xt[30:], k, backend="faiss-cpu"))


def test_chunking_does_not_change_results():
    x, labels, attrs = tie_heavy_data(70, 6, seed=8)
    big = retrieval_metrics(x, labels, ks=(1, 4), query_attrs=attrs, backend="torch")
    small = retrieval_metrics(x, labels, ks=(1, 4), query_attrs=attrs, backend="torch", chunk_bytes=1)
    assert big == small


def test_evaluate_layers_query_gallery_and_leave_one_out():
    x, labels = clustered_data(120, 12, seed=9)
    feats = {"emb": torch.from_numpy(x), "fc": torch.from_numpy(x[:, :8].copy())}
    splits = np.array(["query", "gallery", "train"] * 40, dtype=object)
    attrs = np.random.default_rng(9).random((120, 4)).astype(np.float32)
    qg = evaluate_layers(feats, labels, splits, "query-gallery", ks=(1, 5), attributes=attrs, backend="torch")
    q, g = splits == "query", splits == "gallery"
    assert set(qg) == {"emb", "fc"}
    for layer, f in feats.items():
        want = reference_metrics(f.numpy()[q], labels[q], f.numpy()[g], labels[g], ks=(1, 5), q_attrs=attrs[q], g_attrs=attrs[g])
        assert_metrics_equal(qg[layer], want)
        assert all(type(v) in (float, int) for v in qg[layer].values())  # JSON-ready
    loo = evaluate_layers(feats, labels, splits, "leave-one-out", ks=(1,), backend="torch")
    assert loo["emb"]["num_queries"] + loo["emb"]["excluded_queries"] == 120  # split names ignored
    assert_metrics_equal(loo["fc"], reference_metrics(x[:, :8], labels, ks=(1,)))


def test_invalid_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics([[math.nan, 0.0], [1.0, 0.0]], [0, 0], backend="torch")
    with pytest.raises(ValueError, match="unknown kNN backend"):
        resolve_backend("annoy", None)
    with pytest.raises(ValueError, match="lengths differ"):
        retrieval_metrics([[1.0, 0.0]], [0, 1], backend="torch")
    with pytest.raises(ValueError, match="unknown protocol"):
        evaluate_layers({"emb": torch.zeros(2, 2)}, np.zeros(2), np.array(["test"] * 2), "loo", ks=(1,))


def test_auto_backend_is_torch_without_gpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: auto picks a GPU backend")
    assert resolve_backend("auto", None) == ("torch", torch.device("cpu"))


# ----------------------------------------------------------------------------- bench-eval command


def test_bench_eval_cli_reports_floor_ratio_and_memory(tmp_path, capsys):
    from dmlbench.cli import main

    out = tmp_path / "dmlbench.json"
    assert main(["bench-eval", "--n", "400", "--dim", "16", "--classes", "20", "--backend", "torch", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["floor_ratio"] == pytest.approx(report["eval_s"] / report["gemm_floor_s"])
    assert report["peak_delta_gib"] >= 0 and report["metrics"]["num_queries"] == 400
    x, labels = clustered_embeddings(400, 16, 20)
    assert_metrics_equal(report["metrics"], reference_metrics(x.numpy(), labels, ks=(1, 10)))
    assert "total / floor" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_eval_pml_comparison_runs_in_a_child_process():
    report = run_bench(n=300, dim=16, classes=15, backend="torch", compare_pml=True)
    assert report.pml_s is not None and report.pml_s > 0
    assert not [n for n in report.notes if "differs from PML" in n]  # same precision@1 as PML


def test_grouped_galleries_are_separate_retrieval_tasks_averaged_over_queries():
    """Each query ranked against its own group's gallery: metrics are the query-weighted mean of the
    groups' own evaluations, and the per-query hits saved for compare agree with the table's recall@1."""
    from dmlbench.evaluate.hits import query_hits

    rng = np.random.default_rng(7)
    n = 240
    labels = rng.integers(0, 40, n)
    group_of_class = rng.integers(0, 3, 40)
    galleries = group_of_class[labels]
    splits = np.where(rng.uniform(size=n) < 0.5, "query", "gallery")
    attrs = rng.integers(0, 2, (n, 6)).astype(np.float32)
    feats = torch.as_tensor(rng.normal(size=(n, 8)) + labels[:, None] * 0.05, dtype=torch.float32)
    grouped = evaluate_layers({"emb": feats}, labels, splits, "query-gallery", (1, 5), attributes=attrs,
                              backend="torch", galleries=galleries)["emb"]
    weighted: dict[str, float] = defaultdict(float)
    total = 0
    for g in range(3):
        q = np.flatnonzero((splits == "query") & (galleries == g))
        gal = np.flatnonzero((splits == "gallery") & (galleries == g))
        part = retrieval_metrics(feats[q], labels[q], feats[gal], labels[gal], ks=(1, 5), query_attrs=attrs[q],
                                 gallery_attrs=attrs[gal], backend="torch")
        total += part["num_queries"]
        for key in ("recall@1", "recall@5", "precision@5", "map@r"):
            weighted[key] += part[key] * part["num_queries"]
    assert grouped["num_queries"] == total
    for key, value in weighted.items():
        assert grouped[key] == pytest.approx(value / total, abs=1e-12)
    one_gallery = evaluate_layers({"emb": feats}, labels, splits, "query-gallery", (1,), backend="torch")["emb"]
    assert one_gallery["recall@1"] != grouped["recall@1"]  # the groups do change what is retrieved
    hits = query_hits({"emb": feats}, labels, splits, "query-gallery", np.arange(n), "torch", galleries=galleries)
    assert len(hits["emb"]) == total and hits["emb"].mean() == pytest.approx(grouped["recall@1"])
    assert (hits["classes"] == labels[hits["positions"]]).all()


def test_leave_one_out_hits_agree_with_recall_at_1():
    from dmlbench.evaluate.hits import query_hits

    rng = np.random.default_rng(8)
    labels = rng.integers(0, 30, 150)  # some classes have a single image: not scored
    feats = torch.as_tensor(rng.normal(size=(150, 6)) + labels[:, None] * 0.1, dtype=torch.float32)
    splits = np.array(["test"] * 150)
    table = evaluate_layers({"fc": feats}, labels, splits, "leave-one-out", (1,), backend="torch")["fc"]
    hits = query_hits({"fc": feats}, labels, splits, "leave-one-out", np.arange(150), "torch")
    assert len(hits["fc"]) == table["num_queries"] and hits["fc"].mean() == pytest.approx(table["recall@1"])
