"""The tests' own calendar (tests/support.py): the nights it hands out never overlap, so two tests of a run cannot
meet on a listing by accident (they did, when tests picked random days "far ahead" on the same listings)."""
from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

from tests.support import STRETCHES_START, future_stay, own_nights


def test_stretches_handed_out_at_once_from_many_threads_never_overlap():
    sizes = [1, 2, 3, 366, 7, 30] * 20
    with ThreadPoolExecutor(8) as pool:
        firsts = list(pool.map(own_nights, sizes))
    nights = [first + dt.timedelta(days=i) for first, size in zip(firsts, sizes, strict=True) for i in range(size)]
    assert len(set(nights)) == len(nights) == sum(sizes)


def test_short_stays_end_before_the_stretches_for_many_times_the_calls_a_whole_suite_makes():
    # a whole suite calls future_stay() about 750 times; its stays run up to the 40-day step after the last call
    assert dt.date.fromisoformat(future_stay(30, offset_days=5_000 * 40)[1]) <= STRETCHES_START <= own_nights(1)
