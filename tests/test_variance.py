"""Variance facts: every metric against a hand computation, the flags, the choice of forecast, and the
warehouse step (DuckDB and PostgreSQL) re-running one month without touching another."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest

from salespulse.alerts import variance_alert
from salespulse.config import Settings
from salespulse.schema import create_schema
from salespulse.steps.report import render_variance_report
from salespulse.steps.variance import build_variance
from salespulse.variance import VarianceRules, first_forecasts, variance_facts
from salespulse.warehouse import bulk_insert, get_engine, read_frame
from tests.helpers import reconcile_levels

MONTHS = pd.date_range("2026-01-01", periods=6, freq="MS")
# EMEA's monthly revenue, January to June 2026.
EMEA = [100.0, 110.0, 120.0, 100.0, 130.0, 85.0]
RULES = VarianceRules(horizons=(1, 3), window=4, min_tracking_periods=3)


def _actuals(series_id: str, values: list[float]) -> pd.DataFrame:
    level, member = series_id.split(":")
    return pd.DataFrame(
        {"series_id": series_id, "level": level, "member": member, "period_start": MONTHS, "actual": values}
    )


def _forecast(series_id: str, month: str, horizon: int, value: float, as_of: str, **extra: object) -> dict:
    level, member = series_id.split(":")
    return {
        "series_id": series_id,
        "level": level,
        "member": member,
        "period_start": pd.Timestamp(month),
        "horizon": horizon,
        "forecast_as_of": pd.Timestamp(as_of),
        "model": "ets",
        "forecast": value,
        "lo80": value - 10,
        "hi80": value + 10,
        "lo95": value - 20,
        "hi95": value + 20,
        **extra,
    }


def _emea_forecasts() -> pd.DataFrame:
    """One month ahead: March 100, April 110, May 120, June 100; June three months ahead: 95."""
    rows = [
        _forecast("region:EMEA", f"2026-{m:02d}-01", 1, v, f"2026-{m:02d}-01")
        for m, v in ((3, 100.0), (4, 110.0), (5, 120.0), (6, 100.0))
    ]
    rows.append(_forecast("region:EMEA", "2026-06-01", 3, 95.0, "2026-04-01"))
    return pd.DataFrame(rows)


def _targets() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "level": ["region"],
            "member": ["EMEA"],
            "period_start": [pd.Timestamp("2026-06-01")],
            "target_amount": 100.0,
        }
    )


def test_every_metric_matches_a_hand_computation() -> None:
    """June 2026, EMEA, one month ahead, window March-June (4 months).

    errors (actual - forecast): Mar 120-100 = +20, Apr 100-110 = -10, May 130-120 = +10, Jun 85-100 = -15
        variance   -15, -15.0% of the forecast; target 100: -15, -15.0%
        bias       (20 - 10 + 10 - 15) / (120 + 100 + 130 + 85) = 5 / 435
        WAPE       (20 + 10 + 10 + 15) / 435 = 55 / 435
        tracking   5 / (55 / 4) = 0.3636...
        MASE       each error over the mean |month-on-month change| of the history before its forecast
                   (a year or less of history, so lag 1):
                   Mar 20 / mean(10, 10) = 2; Apr 10 / mean(10, 10, 10)... see below
    MASE scales: Mar (Jan-Feb) 10; Apr (Jan-Mar) 10; May (Jan-Apr: 10, 10, 20) 40/3; Jun (Jan-May: 10, 10,
    20, 30) 17.5. Scaled errors 2, 1, 0.75, 15/17.5; MASE = their mean.
    Intervals: 80% [90, 110] misses 85, 95% [80, 120] holds it.
    Three months ahead (forecast 95): -10, -10/95; one month in its window, so no tracking signal.
    """
    facts = variance_facts(
        _actuals("region:EMEA", EMEA), _emea_forecasts(), _targets(), date(2026, 6, 1), RULES
    )
    one = facts.set_index("horizon").loc[1]
    assert one["actual"] == 85.0 and one["forecast"] == 100.0
    assert one["variance_abs"] == pytest.approx(-15.0)
    assert one["variance_pct"] == pytest.approx(-0.15)
    assert one["target"] == 100.0
    assert one["target_variance_abs"] == pytest.approx(-15.0)
    assert one["target_variance_pct"] == pytest.approx(-0.15)
    assert one["window_periods"] == 4
    assert one["bias"] == pytest.approx(5 / 435)
    assert one["wape"] == pytest.approx(55 / 435)
    assert one["tracking_signal"] == pytest.approx(5 / (55 / 4))
    assert one["mase"] == pytest.approx((2 + 1 + 0.75 + 15 / 17.5) / 4)
    assert not one["within_interval_80"] and one["within_interval_95"]
    assert one["flag_variance"] and one["flag_target"]
    assert not one["flag_tracking_signal"] and not one["flag_interval"]
    assert one["flagged"]
    assert one["flag_reasons"] == "vs forecast -15.0% (limit ±10%); vs target -15.0% (limit ±10%)"
    assert one["variance_pct_threshold"] == 0.10 and one["tracking_signal_threshold"] == 4.0

    three = facts.set_index("horizon").loc[3]
    assert three["variance_abs"] == pytest.approx(-10.0)
    assert three["variance_pct"] == pytest.approx(-10 / 95)
    assert three["window_periods"] == 1
    assert three["bias"] == pytest.approx(-10 / 85)
    assert pd.isna(three["tracking_signal"])
    assert three["flag_variance"] and three["flag_target"]  # -10.5% and -15%
    # June's history before April: Jan-Mar, mean change 10.
    assert three["mase"] == pytest.approx(10 / 10)
    assert str(three["forecast_as_of"])[:10] == "2026-04-01"


def test_a_year_of_history_scales_mase_by_the_seasonal_naive_change() -> None:
    """14 months of history before the forecast: the scale is the mean |y(t) - y(t-12)| (two pairs)."""
    months = pd.date_range("2025-01-01", periods=15, freq="MS")
    values = [100.0] * 12 + [110.0, 130.0, 150.0]  # Jan/Feb 2026 are +10 and +30 on a year before
    actuals = pd.DataFrame(
        {
            "series_id": "total:all",
            "level": "total",
            "member": "all",
            "period_start": months,
            "actual": values,
        }
    )
    forecasts = pd.DataFrame([_forecast("total:all", "2026-03-01", 1, 130.0, "2026-03-01")])
    rules = VarianceRules(horizons=(1,), window=1)
    facts = variance_facts(
        actuals, forecasts, pd.DataFrame(columns=_targets().columns), date(2026, 3, 1), rules
    )
    assert facts["mase"].iloc[0] == pytest.approx(20 / ((10 + 30) / 2))
    assert pd.isna(facts["target"].iloc[0]) and not facts["flag_target"].iloc[0]


def test_errors_that_lean_one_way_raise_the_tracking_signal_flag() -> None:
    """Four months each 10 above the forecast: tracking signal 40 / 10 = 4, flagged only beyond the limit."""
    actual = [100.0, 100.0, 110.0, 110.0, 110.0, 110.0]
    forecasts = pd.DataFrame(
        [_forecast("region:APAC", f"2026-{m:02d}-01", 1, 100.0, f"2026-{m:02d}-01") for m in (3, 4, 5, 6)]
    )
    targets = pd.DataFrame(columns=_targets().columns)
    at_four = VarianceRules(horizons=(1,), window=4, tracking_signal_threshold=4.0)
    facts = variance_facts(_actuals("region:APAC", actual), forecasts, targets, date(2026, 6, 1), at_four)
    assert facts["tracking_signal"].iloc[0] == pytest.approx(4.0)
    assert facts["bias"].iloc[0] == pytest.approx(40 / 440)
    assert not facts["flag_tracking_signal"].iloc[0]  # 4 is not beyond 4
    stricter = VarianceRules(horizons=(1,), window=4, tracking_signal_threshold=3.5)
    facts = variance_facts(_actuals("region:APAC", actual), forecasts, targets, date(2026, 6, 1), stricter)
    assert facts["flag_tracking_signal"].iloc[0]
    assert "tracking signal +4.0 (limit ±3.5)" in facts["flag_reasons"].iloc[0]
    # 10 above a forecast of 100 is 10%, not beyond the 10% limit; 110 is inside the 95% interval.
    assert not facts["flag_variance"].iloc[0] and not facts["flag_interval"].iloc[0]


def test_a_month_without_sales_is_a_zero_actual_and_outside_the_interval() -> None:
    actuals = _actuals("category:Toys", [50.0, 50.0, 50.0, 50.0, 50.0, 0.0])
    actuals = actuals[actuals["actual"] > 0]  # June has no row at all
    from salespulse.variance import actuals_with_zeros

    filled = actuals_with_zeros(actuals.rename(columns={"actual": "revenue"}), date(2026, 7, 1))
    forecasts = pd.DataFrame([_forecast("category:Toys", "2026-06-01", 1, 50.0, "2026-06-01")])
    facts = variance_facts(
        filled, forecasts, pd.DataFrame(columns=_targets().columns), date(2026, 6, 1), RULES
    )
    row = facts.iloc[0]
    assert row["actual"] == 0.0 and row["variance_pct"] == pytest.approx(-1.0)
    assert row["flag_interval"] and row["flag_variance"]
    # A zero forecast has no percent variance rather than an infinite one.
    zero = pd.DataFrame([_forecast("category:Toys", "2026-06-01", 1, 0.0, "2026-06-01")])
    facts = variance_facts(filled, zero, pd.DataFrame(columns=_targets().columns), date(2026, 6, 1), RULES)
    assert pd.isna(facts["variance_pct"].iloc[0]) and not facts["flag_variance"].iloc[0]


def test_the_forecast_judged_is_the_first_one_made_at_that_lead() -> None:
    """June one month ahead was forecast on 1 June (run twice: the later run of that date counts) and again on
    15 June (ignored: the first forecast at a lead is the one judged)."""
    snapshots = pd.DataFrame(
        [
            {**_forecast("region:EMEA", "2026-06-01", 1, 80.0, "2026-06-01"), "run_id": "a",
             "created_at": datetime(2026, 6, 1, 1)},
            {**_forecast("region:EMEA", "2026-06-01", 1, 100.0, "2026-06-01"), "run_id": "b",
             "created_at": datetime(2026, 6, 1, 2)},
            {**_forecast("region:EMEA", "2026-06-01", 1, 200.0, "2026-06-15"), "run_id": "c",
             "created_at": datetime(2026, 6, 15, 1)},
            {**_forecast("region:EMEA", "2026-06-01", 2, 300.0, "2026-05-01"), "run_id": "d",
             "created_at": datetime(2026, 5, 1, 1)},
        ]
    ).rename(columns={"forecast_as_of": "as_of_date"})  # fmt: skip
    picked = first_forecasts(snapshots, (1,))
    assert picked["forecast"].tolist() == [100.0]
    assert picked["run_id"].tolist() == ["b"]


def test_rules_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="horizons"):
        VarianceRules(horizons=(0,))
    with pytest.raises(ValueError, match="positive"):
        VarianceRules(variance_pct_threshold=0)
    with pytest.raises(ValueError, match="window"):
        VarianceRules(window=0)


def test_levels_reconcile_when_members_add_up_and_not_otherwise() -> None:
    rows = [
        _forecast("total:all", "2026-06-01", 1, 300.0, "2026-06-01"),
        _forecast("region:EMEA", "2026-06-01", 1, 100.0, "2026-06-01"),
        _forecast("region:APAC", "2026-06-01", 1, 190.0, "2026-06-01"),
    ]
    actuals = pd.concat(
        [
            _actuals("total:all", [300.0] * 6),
            _actuals("region:EMEA", [100.0] * 6),
            _actuals("region:APAC", [200.0] * 6),
        ]
    )
    targets = pd.DataFrame(columns=_targets().columns)
    facts = variance_facts(actuals, pd.DataFrame(rows), targets, date(2026, 6, 1), RULES)
    check = reconcile_levels(facts).iloc[0]
    assert check["actual_reconciles"] and check["actual_sum"] == 300.0
    assert check["forecast_sum"] == 290.0 and check["forecast_total"] == 300.0
    broken = facts.assign(actual=facts["actual"].where(facts["series_id"] != "region:APAC", 150.0))
    assert not reconcile_levels(broken).iloc[0]["actual_reconciles"]


def test_one_summary_alert_names_the_flags_and_the_largest_rows() -> None:
    facts = variance_facts(
        _actuals("region:EMEA", EMEA), _emea_forecasts(), _targets(), date(2026, 6, 1), RULES
    )
    flagged = facts[facts["flagged"]]
    alert = variance_alert(
        dag_id="variance_report",
        run_id="r1",
        period="2026-06-01",
        flagged=flagged[
            ["series_id", "horizon", "actual", "forecast", "variance_pct", "flag_reasons"]
        ].to_dict(orient="records"),
        total=len(flagged),
        facts=len(facts),
        flags={"variance": int(facts["flag_variance"].sum()), "target": int(facts["flag_target"].sum())},
        report="/tmp/r/index.html",
    )
    assert alert is not None
    assert alert.subject == "[SalesPulse] variance 2026-06-01: 2 of 2 forecast comparison(s) flagged"
    assert "region:EMEA h=1: actual 85 vs forecast 100 (-15.0%)" in alert.text
    assert "Report: /tmp/r/index.html" in alert.text
    assert alert.payload["flags"] == {"variance": 2, "target": 2}
    assert variance_alert(dag_id="d", run_id="r", period="p", flagged=[], total=0, facts=3, flags={}) is None


# -- the warehouse step ------------------------------------------------------------------------------------

META = {"_batch_id": "b", "_run_id": "r", "_loaded_at": datetime(2026, 1, 1)}


def _load_core(engine, monthly: list[float]) -> None:  # type: ignore[no-untyped-def]
    """One EMEA customer (owned by 王芳) buying one Tools product once a month for the given amounts."""
    customers = pd.DataFrame(
        [
            {
                "customer_id": "C1",
                "customer_name": "張偉",
                "region": "EMEA",
                "segment": "SMB",
                "sales_owner": "王芳",
                **META,
            }
        ]
    )
    products = pd.DataFrame([{"product_id": "P1", "product_name": "Drill", "category": "Tools", **META}])
    orders = pd.DataFrame(
        [
            {"order_id": f"O{i}", "customer_id": "C1", "order_date": (m + pd.Timedelta(days=14)).date(),
             "status": "completed", **META}
            for i, m in enumerate(MONTHS)
        ]
    )  # fmt: skip
    lines = pd.DataFrame(
        [
            {"order_id": f"O{i}", "line_number": 1, "product_id": "P1", "quantity": 1, "unit_price": v,
             "discount_pct": 0.0, **META}
            for i, v in enumerate(monthly)
        ]
    )  # fmt: skip
    targets = pd.DataFrame(
        [
            {
                "period_start": date(2026, 6, 1),
                "level": "region",
                "member": "EMEA",
                "target_amount": 100.0,
                **META,
            }
        ]
    )
    with engine.begin() as conn:
        bulk_insert(conn, "core", "dim_customer", customers)
        bulk_insert(conn, "core", "dim_product", products)
        bulk_insert(conn, "core", "fct_order", orders)
        bulk_insert(conn, "core", "fct_order_line", lines)
        bulk_insert(conn, "core", "fct_sales_target", targets)


def _snapshot_rows(series_ids: list[str]) -> pd.DataFrame:
    rows = []
    for series_id in series_ids:
        for _, row in _emea_forecasts().iterrows():
            as_of = row["forecast_as_of"]
            rows.append(
                {
                    **row.drop("forecast_as_of").to_dict(),
                    "series_id": series_id,
                    "level": series_id.split(":")[0],
                    "member": series_id.split(":")[1],
                    "period_start": row["period_start"].date(),
                    "as_of_date": as_of.date(),
                    "run_id": f"fc-{as_of:%Y%m%d}",
                    "created_at": as_of.to_pydatetime(),
                }
            )
    return pd.DataFrame(rows)


def test_the_step_stores_the_hand_computed_facts_and_a_rerun_replaces_only_its_month(
    warehouse_url: str, tmp_path: Path
) -> None:
    engine = get_engine(warehouse_url)
    create_schema(engine)
    _load_core(engine, EMEA)
    with engine.begin() as conn:
        bulk_insert(conn, "marts", "forecast_snapshot", _snapshot_rows(["region:EMEA", "sales_owner:王芳"]))
    settings = Settings(
        warehouse_url=warehouse_url, data_dir=tmp_path, export_dir=tmp_path, variance_window=4
    )

    may = build_variance(settings, date(2026, 6, 1), "may-run")
    june = build_variance(settings, date(2026, 7, 1), "june-run")
    assert may.period == "2026-05-01" and june.period == "2026-06-01"
    facts = read_frame(engine, "select * from marts.fct_variance order by period_start, series_id, horizon")
    jun = facts[facts["period_start"].astype(str).str[:10] == "2026-06-01"]
    emea = jun[jun["series_id"] == "region:EMEA"].set_index("horizon")
    assert emea.loc[1, "variance_abs"] == pytest.approx(-15.0)
    assert emea.loc[1, "bias"] == pytest.approx(5 / 435)
    assert emea.loc[1, "wape"] == pytest.approx(55 / 435)
    assert emea.loc[1, "mase"] == pytest.approx((2 + 1 + 0.75 + 15 / 17.5) / 4)
    assert emea.loc[1, "tracking_signal"] == pytest.approx(5 / (55 / 4))
    assert emea.loc[1, "target_variance_pct"] == pytest.approx(-0.15)
    assert bool(emea.loc[1, "flagged"]) and emea.loc[1, "flag_reasons"].startswith("vs forecast -15.0%")
    # The sales owner's name, in Chinese, is a member like any other and survives the round trip.
    owner = jun[jun["level"] == "sales_owner"]
    assert owner["member"].tolist() == ["王芳", "王芳"]
    assert owner.set_index("horizon").loc[1, "variance_abs"] == pytest.approx(-15.0)
    # Both leads of both series miss by more than 10% (-15% and -10/95); only EMEA has a target.
    assert june.flagged_rows == 4 and june.flags["variance"] == 4 and june.flags["target"] == 2
    assert june.flagged[0]["series_id"] in {"region:EMEA", "sales_owner:王芳"}

    # Re-running June replaces June's rows, and May's stay as they were.
    before = facts[facts["period_start"].astype(str).str[:10] == "2026-05-01"].reset_index(drop=True)
    assert set(before["run_id"]) == {"may-run"} and len(before) == 2
    build_variance(settings, date(2026, 7, 1), "june-rerun")
    after = read_frame(engine, "select * from marts.fct_variance order by period_start, series_id, horizon")
    may_after = after[after["period_start"].astype(str).str[:10] == "2026-05-01"].reset_index(drop=True)
    pd.testing.assert_frame_equal(may_after, before)
    jun_after = after[after["period_start"].astype(str).str[:10] == "2026-06-01"]
    assert set(jun_after["run_id"]) == {"june-rerun"} and len(jun_after) == len(jun)

    flags = read_frame(engine, "select * from reporting.variance_flags order by variance_rank")
    assert set(flags["series_id"]) == {"region:EMEA", "sales_owner:王芳"}
    accuracy = read_frame(engine, "select * from reporting.forecast_accuracy where level = 'region'")
    one = accuracy.set_index("horizon").loc[1]
    # May (130 vs 120) and June (85 vs 100): |10| + |15| over 215.
    assert one["months"] == 2 and one["wape"] == pytest.approx(25 / 215)
    assert one["bias"] == pytest.approx(-5 / 215)

    # The month's report renders from this warehouse: no segments or data-quality history yet, so those
    # sections say so; the owner's name is in the page as written.
    rendered = render_variance_report(settings, date(2026, 7, 1), "report-run")
    page = Path(rendered.report).read_text(encoding="utf-8")
    assert rendered.period == "2026-06-01" and "Sales variance report: 2026-06" in page
    assert "王芳" in page and "sales_owner:王芳 h=1" in page
    assert "No data yet for: segment mix" in page
    assert {"forecast_region.png", "forecast_sales_owner.png", "largest_variances.png"} <= set(
        rendered.charts
    )
    assert "forecast_segment.png" in rendered.charts  # SMB has actuals, though no forecast
