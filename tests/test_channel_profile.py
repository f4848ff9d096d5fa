"""The swapped-channel check's profile and decision rule (dante_nnunet/deploy/channel_profile.py), by hand."""
import numpy as np
import pytest

from dante_nnunet.deploy.channel_profile import (QUANTILES, body_mask, case_profiles, distances, intensity_profile,
                                          looks_swapped, reference_profiles, swap_evidence)


def test_profile_of_0_to_100_is_the_quantiles_by_hand_and_does_not_change_under_gain_and_offset():
    values = np.arange(101, dtype=float)            # the k-th percentile of 0..100 is k
    expected = [(k - 50) / 80 for k in QUANTILES]   # (q_k - q_50) / (q_90 - q_10)
    assert intensity_profile(values) == pytest.approx(expected)
    assert intensity_profile(3.5 * values - 20) == pytest.approx(expected)
    assert intensity_profile(np.full(10, 4.0)) == pytest.approx([0.0] * len(QUANTILES))   # spread 0 -> 1


def test_body_mask_is_where_any_channel_is_non_zero_or_everything():
    a, b = np.zeros((4, 4, 4)), np.zeros((4, 4, 4))
    a[0, 0, 0], b[1, 1, 1] = 1.0, -2.0
    assert body_mask([a, b]).sum() == 2
    assert body_mask([np.zeros((200, 1, 1)), np.zeros((200, 1, 1))]).all()   # under 1%: every voxel


def test_a_swap_is_named_and_alike_channels_are_left_alone():
    rng = np.random.default_rng(0)
    shape = (24, 24, 24)
    skewed = lambda: rng.exponential(1.0, shape)                 # noqa: E731  (T1-like: long upper tail)
    sym = lambda: rng.normal(0.0, 1.0, shape)                    # noqa: E731  (T2-like: symmetric)
    reference = reference_profiles(lambda k: ([skewed(), sym(), sym()], None), ["a", "b", "c"], [0, 1, 2])
    correct = case_profiles([5 * skewed() + 100, 2 * sym() + 7, sym()])
    assert looks_swapped(correct, reference) == {}
    swapped = case_profiles([2 * sym() + 7, 5 * skewed() + 100, sym()])
    found = looks_swapped(swapped, reference)
    assert set(found) == {0, 1} and found[1] == 0 and found[0] in (1, 2)   # 1 and 2 alike: either is right
    # channels 1 and 2 alike: exchanging them is not (and cannot be) told
    assert looks_swapped(case_profiles([skewed(), sym(), sym()]), reference) == {}


def test_decision_rule_by_hand():
    reference = np.array([[0.0, 0.0], [4.0, 0.0]])
    d = distances(np.array([[3.5, 0.0], [0.5, 0.0]]), reference)
    assert d.tolist() == [[3.5, 0.5], [0.5, 3.5]]
    assert looks_swapped(np.array([[3.5, 0.0], [0.5, 0.0]]), reference) == {0: 1, 1: 0}   # 0.5 x 3 < 3.5
    assert looks_swapped(np.array([[3.0, 0.0], [1.0, 0.0]]), reference) == {}           # 1.0 x 3 = 3.0
    assert looks_swapped(np.array([[0.9, 0.0]]), reference[:1]) == {}                  # one channel: nothing
    assert looks_swapped(np.array([[0.0, 0.0], [0.5, 0.0]]), reference) == {}           # one side only: not a swap
    # channels 1 and 2 alike (references 0.5 apart, under ALIKE = 1): never named for each other
    alike = np.array([[0.0, 0.0], [4.0, 0.0], [4.5, 0.0]])
    assert swap_evidence(np.array([[0.0, 0.0], [6.0, 0.0], [4.5, 0.0]]), alike) == {1: (0, 2.0 / 6.0)}
    assert looks_swapped(np.array([[0.0, 0.0], [4.5, 0.0], [4.0, 0.0]]), alike) == {}
