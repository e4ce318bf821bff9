from __future__ import annotations

from datetime import date
from itertools import product

import numpy as np
import pandas as pd
import pytest

from salespulse.segments import (
    DEFAULT_SEGMENT_RULES,
    ClassThresholds,
    SegmentRule,
    assign_segments,
    compute_rfm,
    lifecycle_stages,
    purchase_classes,
    purchase_history,
    quintile_scores,
    value_tiers,
)

AS_OF = date(2026, 1, 31)


def _lines(rows: list[tuple[str, str, str, str, float]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["customer_id", "order_id", "order_date", "status", "net_amount"])
    frame["order_date"] = pd.to_datetime(frame["order_date"])
    return frame


@pytest.fixture
def five_customers() -> pd.DataFrame:
    """Worked by hand (as of 2026-01-31):

    customer  last purchase  recency  orders  revenue   R  F  M  segment
    A         2026-01-30           1       3      300   5  4  3  Champions
    B         2026-01-20          11       1     1000   4  2  5  Potential Loyalists  (F tie with E: B < E)
    C         2025-12-01          61       2       50   3  3  2  Need Attention
    D         2025-06-01         244       5      500   2  5  4  Can't Lose Them      (returned order ignored)
    E         2025-01-15         381       1       20   1  1  1  Lost                 (cancelled one ignored)
    F         only a cancelled order: not scored; G: only a purchase after the as-of date: not scored.
    """
    return _lines(
        [
            ("A", "a1", "2025-11-01", "completed", 100.0),
            ("A", "a2", "2025-12-24", "completed", 50.0),
            ("A", "a3", "2026-01-30", "completed", 100.0),
            ("A", "a3", "2026-01-30", "completed", 50.0),
            ("B", "b1", "2026-01-20", "completed", 1000.0),
            ("C", "c1", "2025-10-01", "completed", 20.0),
            ("C", "c2", "2025-12-01", "completed", 30.0),
            ("D", "d1", "2025-01-01", "completed", 100.0),
            ("D", "d2", "2025-02-01", "completed", 100.0),
            ("D", "d3", "2025-03-01", "completed", 100.0),
            ("D", "d4", "2025-04-01", "completed", 100.0),
            ("D", "d5", "2025-06-01", "completed", 100.0),
            ("D", "d6", "2025-12-15", "returned", 900.0),
            ("E", "e1", "2025-01-15", "completed", 20.0),
            ("E", "e2", "2026-01-29", "cancelled", 500.0),
            ("F", "f1", "2026-01-10", "cancelled", 75.0),
            ("G", "g1", "2026-02-03", "completed", 75.0),
        ]
    )


def test_rfm_of_five_customers_matches_the_hand_computation(five_customers: pd.DataFrame) -> None:
    rfm = compute_rfm(five_customers, AS_OF).set_index("customer_id")
    assert rfm.index.tolist() == ["A", "B", "C", "D", "E"]
    assert rfm["recency_days"].tolist() == [1, 11, 61, 244, 381]
    assert rfm["frequency"].tolist() == [3, 1, 2, 5, 1]
    assert rfm["monetary"].tolist() == [300.0, 1000.0, 50.0, 500.0, 20.0]
    assert rfm["r_score"].tolist() == [5, 4, 3, 2, 1]
    assert rfm["f_score"].tolist() == [4, 2, 3, 5, 1]
    assert rfm["m_score"].tolist() == [3, 5, 2, 4, 1]
    assert rfm["rfm_cell"].tolist() == ["543", "425", "332", "254", "111"]
    assert rfm["rfm_segment"].tolist() == [
        "Champions",
        "Potential Loyalists",
        "Need Attention",
        "Can't Lose Them",
        "Lost",
    ]


def test_scores_do_not_depend_on_row_order(five_customers: pd.DataFrame) -> None:
    shuffled = five_customers.sample(frac=1.0, random_state=3)
    pd.testing.assert_frame_equal(compute_rfm(shuffled, AS_OF), compute_rfm(five_customers, AS_OF))


def test_quintiles_split_ten_values_into_pairs_with_ties_broken_by_id() -> None:
    values = pd.Series([10, 20, 30, 40, 50, 60, 70, 80, 90, 90])
    ids = pd.Series(list("abcdefghij"))
    assert quintile_scores(values, ids).tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert quintile_scores(values, ids, higher_is_better=False).tolist() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    tied = quintile_scores(pd.Series([7] * 5), pd.Series(["e", "d", "c", "b", "a"]))
    assert tied.tolist() == [1, 2, 3, 4, 5]


def test_default_rules_name_every_cell_exactly_once() -> None:
    cells = list(product(range(1, 6), range(1, 6)))
    for r, f in cells:
        matches = [rule.name for rule in DEFAULT_SEGMENT_RULES if r in rule.recency and f in rule.frequency]
        assert len(matches) == 1, (r, f, matches)
    names = assign_segments(
        pd.Series([c[0] for c in cells]), pd.Series([c[1] for c in cells]), DEFAULT_SEGMENT_RULES
    )
    assert set(names) == {rule.name for rule in DEFAULT_SEGMENT_RULES}
    assert len(set(names)) == 11


def test_a_rule_set_that_leaves_cells_unnamed_is_an_error() -> None:
    with pytest.raises(ValueError, match="unnamed"):
        assign_segments(pd.Series([1, 5]), pd.Series([1, 5]), [SegmentRule("Best", (5,), (5,))])


def test_no_completed_purchases_gives_an_empty_frame(five_customers: pd.DataFrame) -> None:
    empty = compute_rfm(five_customers[five_customers.status != "completed"], AS_OF)
    assert empty.empty and "rfm_segment" in empty.columns


def test_value_tiers_follow_the_80_15_5_split() -> None:
    """Revenue 50, 30, 10, 5, 3, 2 (total 100): the first two make 80% (high), the next two 15% (medium)."""
    revenue = pd.Series([3.0, 50.0, 10.0, 2.0, 30.0, 5.0])
    ids = pd.Series(["e", "a", "c", "f", "b", "d"])
    tiers = value_tiers(revenue, ids, ClassThresholds())
    assert dict(zip(ids, tiers, strict=True)) == {
        "a": "high",
        "b": "high",
        "c": "medium",
        "d": "medium",
        "e": "low",
        "f": "low",
    }


def test_purchase_classes() -> None:
    classes = purchase_classes(pd.Series([1, 8, 3, 2]), pd.Series([1, 6, 5, 0]), ClassThresholds())
    assert classes.tolist() == ["one-time", "frequent", "occasional", "occasional"]


@pytest.mark.parametrize(
    ("since_first", "since_last", "cadence", "longest_gap", "p_alive", "stage"),
    [
        (30, 30, None, 0, 1.0, "new"),  # first purchase a month ago
        (400, 20, 30.0, 45, 0.9, "active"),  # buys monthly, bought 20 days ago
        (400, 70, 30.0, 45, 0.9, "at risk"),  # more than two cadences since the last purchase
        (400, 200, 30.0, 45, 0.9, "churned"),  # more than four cadences and 180 days
        (400, 20, 30.0, 45, 0.1, "churned"),  # P(alive) below 0.2 whatever the dates say
        (400, 40, 30.0, 45, 0.4, "at risk"),  # P(alive) below 0.5
        (700, 15, 30.0, 300, 0.9, "reactivated"),  # back after a 300-day gap
        (400, 200, None, 0, None, "at risk"),  # one-time buyer: default cadence 90 days, 2 x 90 < 200
    ],
)
def test_lifecycle_stage_transitions(since_first, since_last, cadence, longest_gap, p_alive, stage) -> None:
    result = lifecycle_stages(
        pd.Series([since_first]),
        pd.Series([since_last]),
        pd.Series([cadence], dtype=float),
        pd.Series([longest_gap], dtype=float),
        pd.Series([p_alive], dtype=float),
        ClassThresholds(),
    )
    assert result.tolist() == [stage]


def test_purchase_history_counts_days_gaps_and_the_last_year(five_customers: pd.DataFrame) -> None:
    history = purchase_history(five_customers, AS_OF)
    a = history.loc["A"]
    # A bought on 2025-11-01, 2025-12-24, 2026-01-30: gaps of 53 and 37 days.
    assert (a.days_since_first, a.days_since_last, a.cadence_days, a.longest_gap_days) == (91, 1, 45.0, 53.0)
    assert a.orders_last_year == 3
    assert history.loc["E", "orders_last_year"] == 0  # E's only completed order is more than a year old
    assert "F" not in history.index  # only a cancelled order


def test_a_stored_snapshot_matches_rfm_worked_out_from_the_export_files(
    small_crm, small_exports, duckdb_url: str, tmp_path
) -> None:
    """Ingest and score the small CRM through the steps, then work RFM and the value tiers out again from
    the export files in plain pandas (completed orders known before the date, lines that pass the quality
    rules): the stored snapshot must match, and a re-run of the date replaces it rather than adding to it."""
    from salespulse.config import Settings
    from salespulse.model import load_order
    from salespulse.steps.ingest import ingest_entity
    from salespulse.steps.prepare import prepare_warehouse
    from salespulse.steps.segments import build_segments
    from salespulse.warehouse import get_engine, read_frame
    from tests.helpers import completed_source_lines

    settings = Settings(warehouse_url=duckdb_url, data_dir=tmp_path, export_dir=small_exports)
    prepare_warehouse(settings)
    as_of = date(2026, 11, 1)
    for entity in load_order():
        ingest_entity(settings, entity.name, as_of, "load")
    build_segments(settings, as_of, "first")
    summary = build_segments(settings, as_of, "second")
    stored = read_frame(get_engine(duckdb_url), "select * from marts.customer_rfm").set_index("customer_id")
    assert set(stored["run_id"]) == {"second"} and len(stored) == summary.customers_scored

    cutoff = pd.Timestamp(as_of)
    lines = completed_source_lines(small_crm, cutoff, cutoff)
    expected = lines.groupby("customer_id").agg(
        frequency=("order_id", "nunique"), monetary=("amount", "sum"), last=("order_date", "max")
    )
    expected["recency_days"] = (cutoff - pd.to_datetime(expected["last"]).dt.normalize()).dt.days
    assert len(expected) > 300 and sorted(stored.index) == sorted(expected.index)
    got = stored.loc[expected.index]
    assert got["frequency"].tolist() == expected["frequency"].tolist()
    assert got["recency_days"].tolist() == expected["recency_days"].tolist()
    np.testing.assert_allclose(got["monetary"], expected["monetary"], rtol=1e-9)
    # The 80/20 rule: the high tier is the fewest largest customers that make 80% of revenue.
    ranked = expected["monetary"].sort_values(ascending=False)
    high = (ranked.cumsum() - ranked < 0.8 * ranked.sum()).sum()
    assert (got["value_tier"] == "high").sum() == high
