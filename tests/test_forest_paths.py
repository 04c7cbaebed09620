"""The flat forest walk gives exactly scikit-learn's probabilities (bit for bit), on real
recognisers of a real run."""
import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from rerelrp_core.data import load_dataset, make_tasks
from rerelrp_core.forest_paths import FlatForest
from rerelrp_core.runs import load_run

FOREST_RUN = Path(__file__).parent / "fixtures" / "runs" / "v1-rerelrp"   # a saved run recognised by forests


@pytest.fixture(scope="module")
def digits_run(digits_forest_run):
    """This file tests the relevance-forest recognisers: its run uses them."""
    return digits_forest_run


def recogniser_inputs(learner, x):
    """Every recogniser's input rows for images ``x`` (what recognise() hands the forests)."""
    return learner.recognise(x)["matrices"]


def test_flat_forest_equals_predict_proba_bit_for_bit(digits_run, digits_tasks):
    learner = digits_run.learner
    matrices = recogniser_inputs(learner, torch.cat([t.x_test for t in digits_tasks]))
    for m, recogniser in enumerate(learner.recogniser.forests):
        x = matrices[m][:, recogniser.columns]
        forest = copy.copy(recogniser.forest)    # the session's run stays as it is
        forest.n_jobs = 1          # scikit-learn's own one-job order of additions
        expected = forest.predict_proba(x)[:, list(forest.classes_).index(1.0)]
        flat = FlatForest(forest, list(forest.classes_).index(1.0)).probability(x)
        assert np.array_equal(flat, expected), np.abs(flat - expected).max()


def test_saved_run_recognition_unchanged_for_single_images():
    run = load_run(FOREST_RUN, device="cpu")
    tasks = make_tasks(load_dataset(run.dataset), run.split)
    x = torch.cat([t.x_test[:40] for t in tasks])
    recognisers = run.learner.recogniser.forests
    matrices = recogniser_inputs(run.learner, x)
    for m, recogniser in enumerate(recognisers):
        rows = matrices[m][:, recogniser.columns]
        forest = copy.copy(recogniser.forest)
        forest.n_jobs = 1
        expected = forest.predict_proba(rows)[:, list(forest.classes_).index(1.0)]
        one_by_one = np.concatenate([recogniser.probability(matrices[m][i:i + 1]) for i in range(len(x))])
        assert np.array_equal(one_by_one, expected)
