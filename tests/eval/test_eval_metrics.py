"""Pass@k estimators and bootstrap CIs."""

from itertools import combinations

import pytest

from eval import pass_at_k
from eval.metrics import bootstrap_ci, k_values, pass_at_k_first


def _enumerated_pass_at_k(n: int, c: int, k: int) -> float:
    """Fraction of all k-subsets of n samples (c correct) that contain a correct one."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_pass_at_k_matches_exact_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(_enumerated_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_1_is_mean_accuracy_and_large_n_is_stable():
    assert pass_at_k(32, 8, 1) == pytest.approx(0.25)
    # 1 - C(1000-1, 500)/C(1000, 500) = 1 - 500/1000
    assert pass_at_k(1000, 1, 500) == pytest.approx(0.5)
    assert pass_at_k(32, 0, 32) == 0.0
    assert pass_at_k(32, 1, 32) == 1.0


@pytest.mark.parametrize("args", [(0, 0, 1), (4, 5, 1), (4, 2, 5), (4, 2, 0), (4, -1, 1)])
def test_pass_at_k_rejects_bad_input(args):
    with pytest.raises(ValueError, match="pass_at_k"):
        pass_at_k(*args)


def test_first_k_estimator_hand_example():
    # samples: wrong, wrong, right, wrong -> any-of-first-k is 0, 0, 1, 1 for k = 1..4
    correct = [False, False, True, False]
    assert [pass_at_k_first(correct, k) for k in range(1, 5)] == [0.0, 0.0, 1.0, 1.0]
    # while the unbiased estimator for (n=4, c=1) is k/4
    assert [pass_at_k(4, 1, k) for k in range(1, 5)] == pytest.approx([0.25, 0.5, 0.75, 1.0])


def test_k_values_up_to_n():
    assert k_values(32) == [1, 2, 4, 8, 16, 32]
    assert k_values(6) == [1, 2, 4]


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    values = [0.0, 1.0, 0.5, 0.25, 1.0, 0.0, 0.75, 1.0, 0.0, 0.5]
    a = bootstrap_ci(values, seed=3)
    assert a == bootstrap_ci(values, seed=3)
    assert a != bootstrap_ci(values, seed=4)
    assert a[0] < sum(values) / len(values) < a[1]
    assert bootstrap_ci([0.4] * 5, seed=0) == pytest.approx((0.4, 0.4))
