"""The ledger: reserve the worst case, shrink or refuse, commit actuals, nest."""

import math

import pytest

from reasoning import Budget, BudgetExhausted, CallShape, ConfigError, Ledger, Usage


def shape(prompt=100, fan_out=False, usd=(0.0, 0.0), flops=0.0):
    return CallShape(prompt, fan_out, fan_out, usd[0], usd[1], flops)


def test_budget_parse_accepts_cli_syntax():
    budget = Budget.parse("tokens=20000, usd=0.1,seconds=60,calls=16,completion_tokens=5_000")
    assert budget.tokens == 20000 and budget.usd == 0.1 and budget.seconds == 60
    assert budget.calls == 16 and budget.completion_tokens == 5000
    assert Budget.parse("") == Budget()


@pytest.mark.parametrize(
    "text, message",
    [
        ("tokens", "name=value"),
        ("tokens=abc", "not a number"),
        ("gpus=2", "unknown budget limit"),
        ("tokens=1,tokens=2", "twice"),
        ("usd=-1", "positive"),
        ("seconds=0", "positive"),
    ],
)
def test_budget_parse_rejects_bad_syntax_clearly(text, message):
    with pytest.raises(ConfigError, match=message):
        Budget.parse(text)


def test_call_that_fits_is_reserved_whole_and_commit_releases_the_rest():
    ledger = Ledger(Budget(tokens=10_000))
    reservation = ledger.reserve(shape(prompt=100), n=8, max_tokens=1000)
    assert (reservation.n, reservation.max_tokens, reservation.shrunk_by) == (8, 1000, None)
    assert ledger.reserved.tokens == 8100
    ledger.commit(reservation, Usage(prompt_tokens=90, completion_tokens=2000, calls=1))
    assert ledger.reserved.tokens == 0
    assert ledger.used.tokens == 2090
    assert ledger.remaining("tokens") == 10_000 - 2090


def test_call_that_does_not_fit_loses_samples_before_length():
    ledger = Ledger(Budget(tokens=3_200))
    reservation = ledger.reserve(shape(prompt=100), n=8, max_tokens=1000)
    assert (reservation.n, reservation.max_tokens) == (3, 1000)
    assert reservation.shrunk_by == "tokens"
    assert ledger.stopped_by == "tokens"
    assert not ledger.exhausted


def test_one_sample_is_shortened_to_what_is_left_then_refused():
    ledger = Ledger(Budget(completion_tokens=300))
    reservation = ledger.reserve(shape(), n=4, max_tokens=1000, min_tokens=64)
    assert (reservation.n, reservation.max_tokens) == (1, 300)
    ledger.commit(reservation, Usage(completion_tokens=250))
    with pytest.raises(BudgetExhausted) as refused:
        ledger.reserve(shape(), n=1, max_tokens=1000, min_tokens=64)
    assert refused.value.limit == "completion_tokens"
    assert ledger.exhausted


def test_fan_out_backends_pay_prompt_and_call_per_sample():
    ledger = Ledger(Budget(calls=3))
    reservation = ledger.reserve(shape(fan_out=True), n=8, max_tokens=100)
    assert reservation.n == 3 and reservation.amount.calls == 3
    native = Ledger(Budget(calls=1)).reserve(shape(fan_out=False), n=8, max_tokens=100)
    assert native.n == 8 and native.amount.calls == 1


def test_usd_limit_uses_prices_for_worst_case():
    ledger = Ledger(Budget(usd=0.01))
    # 1e-5 $/token: prompt 100 -> 0.001; each sample of 300 tokens -> 0.003.
    reservation = ledger.reserve(shape(prompt=100, usd=(1e-5, 1e-5)), n=8, max_tokens=300)
    assert reservation.n == 3
    assert reservation.amount.usd == pytest.approx(0.01)


def test_flops_limit():
    ledger = Ledger(Budget(flops=2 * 1e6 * 1100))
    reservation = ledger.reserve(shape(prompt=100, flops=2 * 1e6), n=4, max_tokens=1000)
    assert reservation.n == 1 and reservation.max_tokens == 1000


def test_child_slice_answers_to_parent_and_counts_in_it():
    parent = Ledger(Budget(tokens=5_000))
    child = parent.child(Budget(tokens=10_000))
    reservation = child.reserve(shape(prompt=0), n=10, max_tokens=1000)
    assert reservation.n == 5  # the parent's limit binds
    child.commit(reservation, Usage(completion_tokens=4000))
    assert parent.used.completion_tokens == 4000
    assert parent.reserved.tokens == 0 and child.reserved.tokens == 0
    sibling = parent.child(Budget(tokens=500))
    assert sibling.reserve(shape(prompt=0), n=4, max_tokens=1000, min_tokens=10).max_tokens == 500


def test_refusal_in_a_child_is_reported_up_the_chain():
    run = Ledger(Budget(tokens=100), label="run:")
    problem = run.child(Budget())
    with pytest.raises(BudgetExhausted):
        problem.reserve(shape(prompt=200), n=1, max_tokens=10)
    assert problem.stopped_by == "run:tokens"


def test_deadline_is_inherited_and_refuses_calls():
    now = [0.0]
    parent = Ledger(Budget(seconds=10), clock=lambda: now[0])
    child = parent.child(Budget(seconds=100))
    assert child.deadline == 10
    now[0] = 11
    with pytest.raises(BudgetExhausted, match="seconds"):
        child.reserve(shape(), n=1, max_tokens=10)
    assert child.seconds_left() < 0 and parent.remaining("seconds") == 0


def test_unlimited_budget_never_refuses():
    ledger = Ledger()
    assert ledger.reserve(shape(prompt=10**9), n=64, max_tokens=10**6).n == 64
    assert math.isinf(ledger.remaining("tokens"))


def test_commit_twice_is_an_error():
    ledger = Ledger()
    reservation = ledger.reserve(shape(), n=1, max_tokens=10)
    ledger.commit(reservation, Usage())
    with pytest.raises(RuntimeError):
        ledger.commit(reservation, Usage())


def test_usage_reported_out_of_bounds_is_charged_at_the_reservation():
    ledger = Ledger(Budget(tokens=10_000))
    reservation = ledger.reserve(shape(prompt=100, usd=(1e-6, 1e-6)), n=2, max_tokens=200)
    charged = ledger.commit(
        reservation, Usage(prompt_tokens=-6_000_000, completion_tokens=900, calls=1, usd=float("nan"))
    )
    # Negative, above n x max_tokens, not a number: each charged at the worst case reserved.
    assert (charged.prompt_tokens, charged.completion_tokens, charged.calls) == (100, 400, 1)
    assert charged.usd == reservation.amount.usd
    assert reservation.anomalies == {"prompt_tokens": -6_000_000, "completion_tokens": 900, "usd": "nan"}
    assert ledger.used.tokens == 500 and ledger.reserved.tokens == 0


def test_honest_usage_is_charged_as_reported_with_no_anomaly():
    ledger = Ledger(Budget(usd=1.0))
    reservation = ledger.reserve(shape(prompt=100, usd=(1e-6, 3e-6)), n=2, max_tokens=200)
    worst = reservation.amount
    charged = ledger.commit(reservation, Usage(prompt_tokens=100, completion_tokens=400, calls=1, usd=worst.usd))
    assert charged == Usage(prompt_tokens=100, completion_tokens=400, calls=1, usd=worst.usd)
    assert reservation.anomalies == {}


@pytest.mark.parametrize("misreport", [-100_000.0, 50.0])
def test_negative_or_inflated_usage_never_lets_a_run_exceed_its_budget(misreport):
    """Issue 11: an upstream reporting negative usage let tokens=400 serve 30 of 30 problems."""
    import asyncio

    import reasoning as rz
    from reasoning.backends import Scripted
    from reasoning.strategies import Greedy

    backend = Scripted(["1"], completion_tokens=20, misreport=misreport)
    run = Ledger(Budget(tokens=400), label="run:")
    results = asyncio.run(rz.asolve_many([f"problem {i}" for i in range(30)], Greedy(), backend, run_ledger=run,
                                         sampling=rz.Sampling(max_tokens=20, min_tokens=8), concurrency=1))
    assert 0 < run.used.tokens <= 400
    assert backend.calls < 30
    assert all(r.usage.tokens >= 0 for r in results)
    flagged = [n for r in results for n in r.trace.calls() if "usage_anomaly" in n.info]
    assert len(flagged) == backend.calls
    assert sum(n.usage["tokens"] for n in flagged) == run.used.tokens


def test_usd_budget_on_a_model_with_no_known_price_is_refused_up_front():
    """Issue 11: a usd budget on an unpriced model was silently unlimited."""
    import asyncio

    import reasoning as rz
    from reasoning.backends import Scripted
    from reasoning.strategies import Greedy

    unpriced = Scripted(usd_per_token=None)
    for budget, run in ((Budget(usd=0.01), None), (None, Ledger(Budget(usd=0.01), label="run:"))):
        with pytest.raises(ConfigError, match="usd budget needs the model's price.*--price"):
            asyncio.run(rz.asolve("1+1", Greedy(), unpriced, budget, run_ledger=run))
    assert unpriced.calls == 0
    # Other limits on it are fine; so is a usd limit on a model known to be free.
    assert asyncio.run(rz.asolve("1+1", Greedy(), unpriced, Budget(tokens=500))).answer == "42"
    assert asyncio.run(rz.asolve("1+1", Greedy(), Scripted(usd_per_token=(0.0, 0.0)), Budget(usd=0.01))).answer == "42"


# -- written against mutation survivors (tests/MUTATION.md): each fails for a mutant of budget.py
@pytest.mark.parametrize("limit", ["tokens", "completion_tokens", "uncached_tokens", "calls", "usd", "flops", "seconds"])
def test_a_negative_limit_is_refused(limit):
    with pytest.raises(ValueError, match=limit):
        Budget(**{limit: -1})


def test_limits_may_be_zero_but_not_infinite_and_budgets_are_frozen():
    zero = Budget(tokens=0, completion_tokens=0, uncached_tokens=0, calls=0, usd=0, flops=0)
    assert zero.limits() == {"tokens": 0, "completion_tokens": 0, "uncached_tokens": 0, "calls": 0, "usd": 0, "flops": 0}
    for limit in ("usd", "flops", "seconds"):
        with pytest.raises(ValueError, match=limit):
            Budget(**{limit: math.inf})
    with pytest.raises(ValueError, match="seconds"):
        Budget(seconds=0)
    with pytest.raises(ValueError, match="gpus"):
        Budget(gpus=2)
    budget = Budget(tokens=5)
    with pytest.raises(ValueError, match="frozen"):
        budget.tokens = 6


def test_budget_parse_edge_cases():
    assert Budget.parse("unlimited") == Budget.parse(" none ") == Budget.parse(None) == Budget()
    # Empty items are skipped (not the end of the list); dashes read as underscores.
    assert Budget.parse("tokens=5,,completion-tokens=7,") == Budget(tokens=5, completion_tokens=7)
    assert Budget.parse("tokens=0,calls=0") == Budget(tokens=0, calls=0)  # zero is a limit, not an error
    # Counts are whole numbers (cut toward zero); money, FLOPs and seconds keep their fraction.
    parsed = Budget.parse("tokens=2.5,completion_tokens=3.9,calls=1.5,usd=0.25,seconds=1.5")
    assert parsed == Budget(tokens=2, completion_tokens=3, calls=1, usd=0.25, seconds=1.5)
    assert str(Budget(tokens=5, usd=0.25)) == "tokens=5,usd=0.25" and str(Budget()) == "unlimited"


@pytest.mark.parametrize(
    "text, message",
    [
        ("tokens=", "budget item 'tokens=' is not of the form name=value"),
        ("tokens", "budget item 'tokens' is not of the form name=value"),
        ("gpus=2", "unknown budget limit 'gpus'; known: tokens, completion_tokens, uncached_tokens, calls, usd, "
                   "flops, seconds"),
        ("tokens=abc", "budget value for 'tokens' is not a number: 'abc'"),
        ("usd=inf", "budget value for 'usd' must be a finite number, got 'inf' (leave a limit out for none)"),
        ("tokens=1,tokens=2", "budget limit 'tokens' given twice"),
        ("usd=-1", "budget value for 'usd' must be positive, got -1"),
    ],
)
def test_budget_parse_errors_say_exactly_what_is_wrong(text, message):
    with pytest.raises(ConfigError) as refused:
        Budget.parse(text)
    assert str(refused.value) == message


def test_usage_arithmetic_and_its_dict_form():
    from dataclasses import FrozenInstanceError, asdict

    assert asdict(Usage()) == dict.fromkeys(
        ("prompt_tokens", "completion_tokens", "calls", "usd", "flops", "seconds", "cached_prompt_tokens"), 0)
    usage = Usage(prompt_tokens=100, completion_tokens=20, calls=1, usd=0.5, flops=10.0, seconds=2.0,
                  cached_prompt_tokens=30)
    assert usage.uncached_tokens == 90
    usage.add(Usage(prompt_tokens=1, completion_tokens=2, calls=3, usd=0.25, flops=5.0, seconds=1.5,
                    cached_prompt_tokens=4))
    assert usage == Usage(101, 22, 4, 0.75, 15.0, 3.5, 34)
    assert usage.to_dict() == {**asdict(usage), "tokens": 123, "uncached_tokens": 89}
    assert Usage.from_dict({"prompt_tokens": 5, "tokens": 99}) == Usage(prompt_tokens=5)
    plain = CallShape(100, False, False)  # free, FLOPs unknown
    assert plain.worst_case(2, 10) == Usage(prompt_tokens=100, completion_tokens=20, calls=1)
    with pytest.raises(FrozenInstanceError):
        plain.prompt_tokens = 1


def test_charge_checks_each_reported_field_against_the_bound():
    from reasoning.budget import charge

    bound = Usage(prompt_tokens=100, completion_tokens=50, calls=1, usd=1.0, flops=100.0)
    # One token over an integer bound is an anomaly; a float a hair over (rounding) is not.
    charged, anomalies = charge(Usage(prompt_tokens=100, completion_tokens=51, calls=1, usd=1.0 + 1e-12), bound)
    assert anomalies == {"completion_tokens": 51} and charged.completion_tokens == 50 and charged.usd == 1.0
    charged, anomalies = charge(Usage(usd=1.001, flops=None, calls=True), bound)
    assert anomalies == {"calls": "True", "usd": 1.001, "flops": "None"}
    assert (charged.calls, charged.usd, charged.flops) == (1, 1.0, 100.0)


@pytest.mark.parametrize(
    "cached, recorded, anomaly",
    [(100, 100, None), (30, 30, None), (0, 0, None), (101, 0, 101), (-5, 0, -5), (math.nan, 0, "nan"),
     ("7", 0, "'7'"), (True, 0, "True")],
)
def test_cached_prompt_tokens_are_kept_only_within_the_prompt_charged(cached, recorded, anomaly):
    from reasoning.budget import charge

    bound = Usage(prompt_tokens=100, completion_tokens=50, calls=1)
    charged, anomalies = charge(Usage(prompt_tokens=100, completion_tokens=10, calls=1, cached_prompt_tokens=cached),
                                bound)
    assert charged.cached_prompt_tokens == recorded
    assert anomalies == ({} if anomaly is None else {"cached_prompt_tokens": anomaly})


def test_headroom_counts_what_is_reserved_and_not_yet_committed():
    ledger = Ledger(Budget(tokens=1000))
    first = ledger.reserve(shape(prompt=100), n=1, max_tokens=400)
    assert first.anomalies == {} and ledger.remaining("tokens") == 500 and not ledger.exhausted
    assert ledger.exhausted is False
    second = ledger.reserve(shape(prompt=100), n=1, max_tokens=800)  # only 500 left while the first is open
    assert (second.max_tokens, second.shrunk_by) == (400, "tokens")
    assert ledger.remaining("tokens") == 0
    ledger.commit(first, Usage(prompt_tokens=100, completion_tokens=50))
    assert ledger.remaining("tokens") == 1000 - 150 - 500


def test_the_smallest_call_is_one_token_by_default_and_a_free_call_fits_a_zero_budget():
    # 101 tokens left: one sample of one token after a 100-token prompt.
    assert Ledger(Budget(tokens=101)).reserve(shape(prompt=100), n=4, max_tokens=50).max_tokens == 1
    assert Ledger(Budget(usd=0.0)).reserve(shape(prompt=100), n=2, max_tokens=10).n == 2


def test_time_is_read_from_the_ledgers_clock_and_the_deadline_is_inclusive():
    now = [5.0]
    ledger = Ledger(Budget(seconds=10), clock=lambda: now[0])
    now[0] = 8.0
    assert ledger.elapsed() == 3.0 and ledger.usage().seconds == 3.0 and ledger.seconds_left() == 7.0
    now[0] = 15.0  # exactly at the deadline: no more calls
    with pytest.raises(BudgetExhausted, match="^budget exhausted: seconds$"):
        ledger.reserve(shape(), n=1, max_tokens=10)
    assert ledger.exhausted is True


def test_an_unlabelled_child_names_the_limit_plainly_and_the_journal_hears_everything():
    events = []

    class Journal:
        def reserved(self, reservation):
            events.append(("reserved", reservation.n))

        def committed(self, reservation, charged):
            events.append(("committed", charged.completion_tokens))

    run = Ledger(Budget(), journal=Journal())
    child = run.child(Budget(tokens=150))
    with pytest.raises(BudgetExhausted, match="^budget exhausted: tokens$"):
        child.reserve(shape(prompt=200), n=1, max_tokens=10)
    assert child.stopped_by == run.stopped_by == "tokens"
    reservation = child.reserve(shape(prompt=100), n=1, max_tokens=10)
    child.commit(reservation, Usage(prompt_tokens=100, completion_tokens=7, calls=1))
    assert events == [("reserved", 1), ("committed", 7)]


def test_shrinking_takes_the_most_samples_then_the_longest_sample_that_fits():
    # 100-token prompt (paid once), 100 tokens per sample: room for exactly 7, then exactly 6.
    assert Ledger(Budget(tokens=100 + 7 * 100)).reserve(shape(prompt=100), n=8, max_tokens=100).n == 7
    assert Ledger(Budget(tokens=100 + 6 * 100)).reserve(shape(prompt=100), n=8, max_tokens=100).n == 6
    # One sample one token short of max_tokens.
    one = Ledger(Budget(tokens=100 + 49)).reserve(shape(prompt=100), n=3, max_tokens=50)
    assert (one.n, one.max_tokens, one.shrunk_by) == (1, 49, "tokens")


def test_a_refusal_names_the_limit_that_refuses_the_smallest_call():
    # The full call breaks tokens first; one sample of min_tokens only breaks completion_tokens.
    ledger = Ledger(Budget(tokens=300, completion_tokens=5))
    with pytest.raises(BudgetExhausted, match="^budget exhausted: completion_tokens$"):
        ledger.reserve(shape(prompt=0), n=4, max_tokens=100, min_tokens=10)
    # One sample of min_tokens breaks completion_tokens; two would break tokens first.
    ledger = Ledger(Budget(tokens=15, completion_tokens=5))
    with pytest.raises(BudgetExhausted, match="^budget exhausted: completion_tokens$"):
        ledger.reserve(shape(prompt=0), n=1, max_tokens=10, min_tokens=10)
    assert ledger.stopped_by == "completion_tokens"


def test_a_deadline_is_marked_on_the_ledger_that_set_it_and_stops_everything():
    now = [0.0]
    run = Ledger(Budget(seconds=100), label="run:", clock=lambda: now[0])
    problem = run.child(Budget(seconds=10), label="problem:")
    problem.mark_deadline()
    assert problem.stopped_by == run.stopped_by == "problem:seconds"
    assert problem.exhausted and run.exhausted


def test_a_committed_reservation_is_closed():
    ledger = Ledger()
    reservation = ledger.reserve(shape(), n=1, max_tokens=10)
    ledger.commit(reservation, Usage())
    assert reservation.open is False
    with pytest.raises(RuntimeError, match="^reservation committed twice$"):
        ledger.release(reservation)


def test_budget_str_is_exact_and_parses_back():
    from reasoning import Budget

    budget = Budget(tokens=1_000_000, usd=0.123456789, flops=2e15, seconds=30)
    text = str(budget)
    assert "e+" not in text and "usd=0.123456789" in text and "tokens=1000000" in text
    assert Budget.parse(text).limits() == budget.limits()
    assert str(Budget()) == "unlimited"
