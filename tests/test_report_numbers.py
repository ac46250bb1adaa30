"""Numbers in the sweep report's table (``report._fmt``), in Python. The same numbers are checked
on the rendered page, in a real browser, in tests/test_pages_in_browser.py."""

from __future__ import annotations

import math
import re
from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from hypothesis import example, given, strategies as st

from reasoning.benchmarks.report import _fmt

GROUPED = re.compile(r"^-?\d{1,3}(,\d{3})*(\.\d*[1-9])?$")  # 3,549.76; no trailing zero after a point


@pytest.mark.parametrize(("value", "digits", "shown"), [
    (0, 0, "0"), (0.0, 3, "0"), (1000, 0, "1,000"), (1000.0, 0, "1,000"), (3550, 0, "3,550"),
    (3549.76, 0, "3,550"), (3549.76, 2, "3,549.76"), (3549.76, 3, "3,549.76"), (3550.0, 3, "3,550"),
    (10.0, 2, "10"), (100.5, 0, "100"), (0.001, 3, "0.001"), (0.001, 0, "0"), (0.00012, 5, "0.00012"),
    (-3549.76, 0, "-3,550"), (-1000.0, 0, "-1,000"), (-0.0001, 3, "0"), (-0.25, 3, "-0.25"),
    (999_999.4, 0, "999,999"), (1e6, 0, "1e+06"), (1e9, 0, "1e+09"), (2.5e15, 3, "2.5e+15"), (-1e9, 0, "-1e+09"),
    (None, 0, "-"), (math.nan, 0, "-"), (math.inf, 3, "inf"), (-math.inf, 0, "-inf"),
])
def test_table_numbers(value, digits, shown):
    assert _fmt(value, digits) == shown


def expected(value: float, digits: int) -> Decimal:
    """The value rounded as the table should show it, computed without string formatting."""
    return Decimal(value).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_EVEN)


@given(st.one_of(st.floats(min_value=-999_999.0, max_value=999_999.0, allow_nan=False),
                 st.integers(min_value=-999_999, max_value=999_999)),
       st.sampled_from([0, 2, 3, 5]))
@example(3549.76, 0)
@example(3550, 0)
@example(1000.0, 0)
@example(0, 0)
@example(0.001, 3)
def test_below_a_million_every_digit_is_kept_and_only_decimal_zeros_dropped(value, digits):
    shown = _fmt(value, digits)
    rounded = expected(value, digits)
    if rounded.copy_abs() >= 1_000_000:  # 999,999.6 rounds up past the grouped range
        return
    assert GROUPED.match(shown), shown
    assert Decimal(shown.replace(",", "")) == (rounded if rounded != 0 else 0), (value, digits, shown)


@given(st.floats(min_value=1e6, max_value=1e30) | st.floats(min_value=-1e30, max_value=-1e6))
@example(1e9)
def test_from_a_million_three_significant_digits(value):
    shown = _fmt(value)
    assert re.match(r"^-?\d(\.\d{1,2})?e\+\d\d$", shown), shown
    assert math.isclose(float(shown), value, rel_tol=5e-3)
