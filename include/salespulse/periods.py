"""The periods every step agrees on, defined once.

An as-of date ``D`` means "what was known before D": the month and week that contain D are incomplete,
so the last complete month is the one before D's month. The variance report reports that month, the
series end there, and the revenue drivers compare it with the month before.
"""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd


def month_start(day: date) -> date:
    """The first day of ``day``'s month."""
    return date(day.year, day.month, 1)


def week_start(day: date) -> date:
    """The Monday of ``day``'s week (weeks as ``date_trunc('week', ...)`` has them in both warehouses)."""
    return day - timedelta(days=day.weekday())


def months_before(month: date, months: int) -> date:
    """The first day of the month ``months`` months before ``month``'s."""
    return (pd.Timestamp(month_start(month)) - pd.DateOffset(months=months)).date()


def last_complete_month(as_of: date) -> date:
    """The last complete month before ``as_of``: the month a variance run reports and a series ends with."""
    return months_before(as_of, 1)


def last_complete_week(as_of: date) -> date:
    """The Monday of the last complete week before ``as_of``."""
    return week_start(as_of) - timedelta(days=7)
