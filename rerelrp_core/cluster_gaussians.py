"""The Gaussians class recognition keeps: how a class's training images are split into clusters,
how one cluster's Gaussian is stored in few bytes, and the metric it becomes at test time.

A cluster keeps its mean and its covariance as the ``rank`` leading eigenvectors (int8, one scale
per vector) with their eigenvalues, plus the variance they leave out per feature, which is positive
semi-definite however the vectors are rounded. At test time each covariance is normalised to a mean
variance of 1 and shrunk towards the identity (as FeCAM, arXiv 2309.14062, does for a frozen
backbone).
"""
import numpy as np
import torch
from sklearn.cluster import KMeans

MIN_CLUSTER = 20         # training images a cluster needs for a covariance of its own
PARTS = ("means", "vectors", "scales", "variances", "classes")


def clusters(values, most, seed):
    """Cluster labels of ``values`` (rows): k-means with up to ``most`` clusters, fewer where a
    cluster would hold under MIN_CLUSTER rows (a class with few images keeps one Gaussian)."""
    for k in range(min(most, len(values) // MIN_CLUSTER), 1, -1):
        labels = KMeans(k, n_init=3, random_state=seed).fit_predict(values.float().numpy())
        if np.bincount(labels, minlength=k).min() >= MIN_CLUSTER:
            return torch.from_numpy(labels).long()
    return torch.zeros(len(values), dtype=torch.int64)


def quantised(vectors):
    """int8 vectors and one float32 scale per vector (per last-axis column)."""
    scales = (vectors.abs().amax(-2) / 127).clamp_min(1e-30)
    return (vectors / scales.unsqueeze(-2)).round().clamp(-127, 127).to(torch.int8), scales.float()


def gaussian(own, rank):
    """Mean, int8 leading eigenvectors, their scales, and eigenvalues + residual variances of the
    rows ``own``."""
    centred = own - own.mean(0)
    covariance = centred.T @ centred / len(own)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    rank = min(rank, len(covariance))
    kept = eigenvalues[-rank:].clamp_min(0)
    vectors, scales = quantised(eigenvectors[:, -rank:])
    leading = vectors.double() * scales.double()
    residual = (covariance.diagonal() - (leading ** 2 * kept).sum(1)).clamp_min(0)
    return own.mean(0), vectors, scales, torch.cat([kept, residual])


def covariances(vectors, scales, variances, shrink):
    """One task's clusters' stored covariances Σ (clusters, w, w), their mean variances s
    (clusters,) and the normalised, shrunk covariances (1 - shrink) Σ / s + shrink I, in float64."""
    vectors, variances = vectors.double() * scales.double().unsqueeze(1), variances.double()
    rank = vectors.shape[-1]
    covariance = (vectors * variances[:, None, :rank]) @ vectors.transpose(1, 2)
    covariance = covariance + torch.diag_embed(variances[:, rank:])
    scale = torch.diagonal(covariance, dim1=1, dim2=2).mean(1).clamp_min(1e-12)
    eye = torch.eye(covariance.shape[-1], dtype=covariance.dtype)
    return covariance, scale, (1 - shrink) * covariance / scale[:, None, None] + shrink * eye


def precision(covariance, shrunk):
    """The precision of every cluster and the mean distance of its own images, trace(P Σ)."""
    inverse = torch.cholesky_inverse(torch.linalg.cholesky(shrunk))
    return inverse, torch.einsum("cde,ced->c", inverse, covariance)


def valid(parts, n_classes, width, rank):
    """Whether a task's stored statistics (a dict of :data:`PARTS`) fit ``n_classes`` classes in a
    space ``width`` wide."""
    if any(part is None for part in parts.values()):
        return False
    n_clusters = len(parts["classes"])
    expected = {"means": ((n_clusters, width), (torch.float32,)),
                "vectors": ((n_clusters, width, rank), (torch.int8, torch.float16)),
                "scales": ((n_clusters, rank), (torch.float32,)),
                "variances": ((n_clusters, rank + width), (torch.float32,)),
                "classes": ((n_clusters,), (torch.int64,))}
    for name, (shape, dtypes) in expected.items():
        part = parts[name]
        if tuple(part.shape) != shape or part.dtype not in dtypes:
            return False
        if part.is_floating_point() and not torch.isfinite(part).all():
            return False
    return (bool((parts["variances"] >= 0).all())
            and torch.equal(torch.unique(parts["classes"]), torch.arange(n_classes)))
