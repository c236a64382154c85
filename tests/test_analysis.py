import numpy as np
import pytest
import torch

from cliptune import analysis


@pytest.fixture
def points():
    return np.random.default_rng(0).normal(size=(60, 8))


def test_rotation_invariance(points):
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(8, 8)))
    rotated = points @ q
    assert analysis.linear_cka(points, rotated) == pytest.approx(1.0)
    assert analysis.procrustes_residual(points, rotated) == pytest.approx(0.0, abs=1e-9)
    assert analysis.knn_overlap(points, rotated, k=5) == pytest.approx(1.0)


def test_unrelated_sets_score_low(points):
    other = np.random.default_rng(2).normal(size=(60, 8))
    assert analysis.linear_cka(points, other) < 0.5
    assert analysis.procrustes_residual(points, other) > 0.5
    assert analysis.knn_overlap(points, other, k=5) < 0.3


def test_procrustes_handles_other_widths_and_tensors(points):
    wide = np.concatenate([points, np.zeros((60, 4))], axis=1)
    assert analysis.procrustes_residual(torch.tensor(points), wide) == pytest.approx(0, abs=1e-9)


def test_drift_table_groups(points):
    groups = ["a"] * 30 + ["b"] * 30
    noisy = points + np.r_[np.zeros((30, 8)), np.random.default_rng(3).normal(size=(30, 8))]
    table = analysis.drift_table(points, noisy, groups, k=5).set_index("group")
    assert table.loc["a", "cka"] == pytest.approx(1.0) and table.loc["b", "cka"] < 0.9


def test_aligned_umap_shapes_and_determinism(points):
    a = analysis.aligned_umap([points, points * 2], n_neighbors=5, n_epochs=20)
    b = analysis.aligned_umap([points, points * 2], n_neighbors=5, n_epochs=20)
    assert len(a) == 2 and a[0].shape == (60, 2) and np.allclose(a[0], b[0])
    with pytest.raises(ValueError, match="same points"):
        analysis.aligned_umap([points, points[:10]])
