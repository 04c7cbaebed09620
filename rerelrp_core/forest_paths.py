"""A random forest's class probability for a few rows, without a Python call per tree.

scikit-learn's ``predict_proba`` calls every tree's own predict (300 trees, a few microseconds of
Python each), which dominates explaining one image. :class:`FlatForest` lays every node of every
tree out in flat arrays once, walks all trees for all rows together with numpy, and adds the
trees' leaf values in tree order, exactly as scikit-learn does with one job: the same float32
inputs, the same float64 comparisons and the same order of additions give bit-identical results
(tested against ``predict_proba``).
"""
import numpy as np


class FlatForest:
    """Every tree of a fitted forest classifier in flat node arrays, for one class's probability."""

    def __init__(self, forest, class_index):
        trees = [estimator.tree_ for estimator in forest.estimators_]
        sizes = np.array([tree.node_count for tree in trees])
        self.roots = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        shift = np.repeat(self.roots, sizes)
        left = np.concatenate([tree.children_left for tree in trees])
        right = np.concatenate([tree.children_right for tree in trees])
        self.leaf = left < 0
        self.left = np.where(self.leaf, -1, left + shift)
        self.right = np.where(self.leaf, -1, right + shift)
        self.feature = np.concatenate([tree.feature for tree in trees]).clip(min=0)
        self.threshold = np.concatenate([tree.threshold for tree in trees])
        self.value = np.concatenate([tree.value[:, 0, class_index] for tree in trees])
        self.depth = max(estimator.get_depth() for estimator in forest.estimators_)

    def probability(self, x):
        """The forest's probability of the class for every row of ``x`` (no missing values)."""
        x = np.asarray(x, dtype=np.float32)     # as scikit-learn validates its input
        rows = np.arange(len(x))
        node = np.repeat(self.roots[:, None], len(x), axis=1)          # (trees, rows)
        for _ in range(self.depth):
            inner = ~self.leaf[node]
            if not inner.any():
                break
            # a float32 feature against a float64 threshold, as the tree's own code compares them
            goes_left = x[rows, self.feature[node]].astype(np.float64) <= self.threshold[node]
            node = np.where(inner, np.where(goes_left, self.left[node], self.right[node]), node)
        leaves = self.value[node]
        total = np.zeros(len(x))
        for per_tree in leaves:          # tree by tree, like scikit-learn's one-job accumulation
            total += per_tree
        return total / len(leaves)
