import numpy as np
import pytest

from tinycl_nodes.core.metrics import (PrequentialAccuracy, accuracy_on, classification_scores,
                                       forgetting, rolling_accuracy)


def test_macro_scores_by_hand():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0])
    s = classification_scores(y_true, y_pred)
    # class 0: P=1/2 R=1/2; class 1: P=2/3 R=1; class 2: P=1 R=1/2
    assert s["accuracy"] == pytest.approx(100 * 4 / 6)
    assert s["precision"] == pytest.approx(100 * (0.5 + 2 / 3 + 1) / 3)
    assert s["recall"] == pytest.approx(100 * (0.5 + 1 + 0.5) / 3)
    f1 = [0.5, 2 * (2 / 3) / (5 / 3), 2 * 0.5 / 1.5]
    assert s["f1"] == pytest.approx(100 * np.mean(f1))


def test_predicted_class_never_true_counts_in_macro():
    s = classification_scores(np.array([0, 0]), np.array([0, 7]))
    assert s["precision"] == pytest.approx(50.0)  # class 7 has precision 0
    assert s["recall"] == pytest.approx(25.0)     # class 0 recall 0.5, class 7 recall 0


def test_no_prediction_counts_wrong():
    s = classification_scores(np.array([1, 1]), np.array([-1, 1]))
    assert s["accuracy"] == 50.0


def test_shape_mismatch_rejected():
    with pytest.raises(ValueError):
        classification_scores(np.array([1, 2]), np.array([1]))


def test_prequential_and_subsets():
    p = PrequentialAccuracy()
    for t, q in [(1, 1), (2, None), (3, 3), (4, 0)]:
        p.update(t, q)
    assert p.accuracy == 0.5
    assert accuracy_on(np.array([0, 6, 7]), np.array([0, 6, 1]), [6, 7]) == 50.0
    assert forgetting(98.0, 97.5) == pytest.approx(0.5)


def test_rolling_accuracy():
    c = np.array([1, 0] * 10 + [1] * 10, bool)
    r = rolling_accuracy(c, window=10)
    assert r.shape == (30,)
    assert r[0] == 100.0 and r[19] == 50.0 and r[-1] == 100.0
