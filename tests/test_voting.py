"""strategies/voting.py directly: the tally, the winner's share, vote keys, ties (exact values).

Written against the survivors of a mutation run (tests/MUTATION.md): each test fails for a
mutant that the strategy tests let through.
"""

import pytest

from reasoning.context import Sample
from reasoning.strategies.voting import best_index, key_of, majority


def test_the_share_is_the_winners_weight_over_all_weight():
    vote = majority([Sample("a", "5"), Sample("b", "6"), Sample("c", "5")])
    assert (vote.answer, vote.tally, vote.share) == ("5", {"5": 2.0, "6": 1.0}, pytest.approx(2 / 3))
    weighted = majority([Sample("a", "5"), Sample("b", "6")], [0.3, 0.2])  # total 0.5 < 1
    assert (weighted.answer, weighted.share) == ("5", pytest.approx(0.6))


def test_samples_without_an_answer_do_not_vote_and_do_not_end_the_count():
    vote = majority([Sample("a", None), Sample("b", "7"), Sample("c", "\\text{}"), Sample("d", "7")])
    assert (vote.answer, vote.tally, vote.share) == ("7", {"7": 2.0}, 1.0)
    assert vote.sample.text == "b"  # the first sample that gave the winner


def test_no_vote_and_zero_weight_have_share_zero():
    assert majority([]).share == 0.0 and majority([Sample("a", None)]).answer is None
    assert majority([Sample("a", None)]).share == 0.0
    zero = majority([Sample("a", "5"), Sample("b", "6")], [0.0, 0.0])
    assert (zero.answer, zero.share) == ("5", 0.0)  # no division by a zero total


def test_one_weight_per_sample():
    with pytest.raises(ValueError, match="^one weight per sample$"):
        majority([Sample("a", "5")], [1.0, 2.0])


def test_the_vote_key_groups_answers_the_normalised_text_keeps_apart():
    # "1/2", "0.25" and "3/4" normalise apart (so 6 would win 2 to 1) but share a context's key.
    keyed = [Sample(t, a, info={"vote_key": "fraction"}) for t, a in (("a", "1/2"), ("d", "0.25"), ("e", "3/4"))]
    vote = majority([keyed[0], Sample("b", "6"), Sample("c", "6"), *keyed[1:]])
    assert (vote.answer, vote.tally) == ("1/2", {"fraction": 3.0, "6": 2.0})
    assert key_of(Sample("b", "6")) == "6" and key_of(Sample("x", None)) is None


def test_ties_go_to_the_first_answer_and_the_earlier_sample():
    assert majority([Sample("a", "9"), Sample("b", "3")]).answer == "9"
    assert majority([Sample("a", "3"), Sample("b", "9")]).answer == "3"
    assert best_index([0.5, 0.9, 0.9]) == 1
    assert best_index([0.9, 0.9], [0.1, 0.2]) == 1  # the tiebreak decides
    assert best_index([0.9, 0.9], [0.2, 0.2]) == 0  # full tie: the earlier sample
