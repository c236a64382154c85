"""Embedding drift between CLIP versions: CKA, Procrustes, k-NN overlap, aligned UMAP.

Introduced in notebook 06. Two CLIP versions embed the same inputs in unrelated coordinates
(any rotation of a space is as good as another), so every measure here is invariant to an
orthogonal change of basis; only the geometry *within* each version is compared.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch


def _np(x) -> np.ndarray:
    return x.detach().cpu().double().numpy() if torch.is_tensor(x) else np.asarray(x, np.float64)


def linear_cka(x, y) -> float:
    """Linear centred kernel alignment of two [N, D] feature sets: 1 = same geometry."""
    x, y = _np(x), _np(y)
    x, y = x - x.mean(0), y - y.mean(0)
    cross = np.linalg.norm(y.T @ x) ** 2
    return float(cross / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def procrustes_residual(x, y) -> float:
    """What is left after the best rotation: min_R ||xR - y||^2 over orthogonal R, after
    centring and scaling both sets to unit Frobenius norm. 0 = identical up to rotation;
    the widths may differ (the smaller set is zero-padded)."""
    x, y = _np(x), _np(y)
    d = max(x.shape[1], y.shape[1])
    x = np.pad(x - x.mean(0), ((0, 0), (0, d - x.shape[1])))
    y = np.pad(y - y.mean(0), ((0, 0), (0, d - y.shape[1])))
    x, y = x / np.linalg.norm(x), y / np.linalg.norm(y)
    singular = np.linalg.svd(x.T @ y, compute_uv=False)
    return float(max(0.0, 2.0 - 2.0 * singular.sum()))


def knn_sets(x, k: int) -> np.ndarray:
    x = _np(x)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    return np.argsort(-sim, axis=1, kind="stable")[:, :k]


def knn_overlap(x, y, k: int = 10, per_point: bool = False):
    """Share of each point's k nearest neighbours (cosine) that both versions agree on."""
    a, b = knn_sets(x, k), knn_sets(y, k)
    scores = np.array([len(set(a[i]) & set(b[i])) / k for i in range(len(a))])
    return scores if per_point else float(scores.mean())


def drift_table(x, y, groups, k: int = 10, min_size: int = 5):
    """CKA, Procrustes residual and k-NN overlap per group (e.g. per class or per domain).

    k-NN overlap is measured in the whole set (neighbours may lie in other groups) and then
    averaged per group; CKA and Procrustes compare each group's own points.
    """
    import pandas as pd
    groups = np.asarray(groups)
    overlap = knn_overlap(x, y, k, per_point=True)
    x, y = _np(x), _np(y)
    rows = []
    for g in dict.fromkeys(groups.tolist()):
        m = groups == g
        if m.sum() < min_size:
            continue
        rows.append({"group": g, "n": int(m.sum()), "cka": linear_cka(x[m], y[m]),
                     "procrustes": procrustes_residual(x[m], y[m]),
                     "knn_overlap": float(overlap[m].mean())})
    return pd.DataFrame(rows)


def aligned_umap(embeddings, n_neighbors: int = 15, min_dist: float = 0.1,
                 random_state: int = 0, n_epochs: int | None = None,
                 alignment_regularisation: float = 0.01):
    """2-D layouts of the same points embedded by several models, aligned to each other.

    ``embeddings`` is a list of [N, D_i] arrays whose row i is the same input in every model
    (identity relations between consecutive models). A fixed ``random_state`` makes the
    layout reproducible (and single-threaded). Returns a list of [N, 2] arrays.
    """
    import umap
    arrays = [_np(e) for e in embeddings]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError("every model must embed the same points: row counts differ "
                         f"({[len(a) for a in arrays]})")
    relations = [{i: i for i in range(n)} for _ in range(len(arrays) - 1)]
    reducer = umap.AlignedUMAP(n_neighbors=n_neighbors, min_dist=min_dist, metric="cosine",
                               random_state=random_state, n_epochs=n_epochs,
                               alignment_regularisation=alignment_regularisation)
    with warnings.catch_warnings():
        # AlignedUMAP builds UMAPs with n_jobs=-1 and then says it forces one thread because
        # of the seed: exactly what we asked for, so the warning is only noise
        warnings.filterwarnings("ignore", message="n_jobs value .* overridden to 1",
                                category=UserWarning)
        reducer.fit(arrays, relations=relations)
    return [np.asarray(e) for e in reducer.embeddings_]


def procrustes_align(x, y):
    """``y`` [N, D] rotated onto ``x`` [N, D] (same rows = same inputs): both are centred and
    ``y`` is turned by the orthogonal R minimising ||y R - x|| (no scaling, no shear), so what
    is left between the two is the drift a change of basis cannot explain. Returns the centred
    ``x`` and the rotated, centred ``y`` as float64 arrays."""
    x, y = _np(x), _np(y)
    if x.shape != y.shape:
        raise ValueError(f"procrustes_align needs two [N, D] sets of one shape, got {x.shape} "
                         f"and {y.shape}")
    x, y = x - x.mean(0), y - y.mean(0)
    u, _, vt = np.linalg.svd(y.T @ x)
    return x, y @ (u @ vt)


def shared_layout(embeddings, n_neighbors: int = 15, min_dist: float = 0.1,
                  random_state: int = 0, n_epochs: int | None = None):
    """2-D layouts of the same points embedded by several models, in ONE coordinate system.

    Each model's [N, D] set is rotated onto the first's (:func:`procrustes_align`), then a
    single UMAP is fitted to all of them stacked, so a point that moved between versions lands
    in a different place and one that did not stays put: drift stays visible (aligned UMAP,
    which pulls the layouts together, hides part of it). Returns a list of [N, 2] arrays."""
    import umap
    arrays = [_np(e) for e in embeddings]
    n = len(arrays[0])
    if any(a.shape != arrays[0].shape for a in arrays):
        raise ValueError("every model must embed the same points in one width: shapes "
                         f"{[a.shape for a in arrays]}")
    ref = arrays[0] - arrays[0].mean(0)
    stacked = np.concatenate([ref] + [procrustes_align(ref, a)[1] for a in arrays[1:]])
    reducer = umap.UMAP(n_neighbors=n_neighbors, min_dist=min_dist, metric="cosine",
                        random_state=random_state, n_epochs=n_epochs)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="n_jobs value .* overridden to 1",
                                category=UserWarning)
        flat = np.asarray(reducer.fit_transform(stacked))
    return [flat[i * n:(i + 1) * n] for i in range(len(arrays))]
