"""Variance facts: every metric against a hand computation, the flags, the choice of forecast, and the
warehouse step (DuckDB and PostgreSQL) re-running one month without touching another."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from salespulse.alerts import variance_alert
from salespulse.config import Settings
from salespulse.schema import create_schema
from salespulse.steps.report import render_variance_report
from salespulse.steps.variance import build_variance
from salespulse.variance import Z95, VarianceRules, bias_by_level, first_forecasts, variance_facts
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
    # Stated 95% interval [80, 120]: sigma 20 / 1.96 per month; the window's errors sum to 5 over 4 months.
    assert one["tracking_z"] == pytest.approx(5 / (2 * 20 / 1.959963984540054))
    assert not one["flag_interval"] and not one["flag_tracking_signal"] and not one["flag_forecast"]
    # A 15 miss on a month whose total is 85 is material at 1% (0.85) and the target miss is -15%.
    assert one["materiality_threshold"] == pytest.approx(0.85) and one["material"]
    assert one["flag_target"] and one["flagged"]
    assert one["flag_reasons"] == "vs target -15.0% (limit ±10%)"
    assert one["tracking_z_threshold"] == 2.576 and one["target_pct_threshold"] == 0.10

    three = facts.set_index("horizon").loc[3]
    assert three["variance_abs"] == pytest.approx(-10.0)
    assert three["variance_pct"] == pytest.approx(-10 / 95)
    assert three["window_periods"] == 1
    assert three["bias"] == pytest.approx(-10 / 85)
    assert pd.isna(three["tracking_signal"]) and pd.isna(three["tracking_z"])
    assert three["flag_target"] and not three["flag_forecast"]  # 85 is inside [75, 115]; -15% on target
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


def test_errors_that_lean_one_way_raise_the_tracking_flag_by_the_spread_the_forecasts_stated() -> None:
    """Four months each 10 above a forecast whose 95% interval is +/-20 (sigma 20 / 1.96): no single month is
    unusual, but together they sum to 40 over sqrt(4) sigmas = 1.96 sigma. The classic tracking signal is 40 /
    10 = 4 whatever the intervals said."""
    actual = [100.0, 100.0, 110.0, 110.0, 110.0, 110.0]
    forecasts = pd.DataFrame(
        [_forecast("region:APAC", f"2026-{m:02d}-01", 1, 100.0, f"2026-{m:02d}-01") for m in (3, 4, 5, 6)]
    )
    targets = pd.DataFrame(columns=_targets().columns)
    default = VarianceRules(horizons=(1,), window=4)
    facts = variance_facts(_actuals("region:APAC", actual), forecasts, targets, date(2026, 6, 1), default)
    row = facts.iloc[0]
    assert row["tracking_signal"] == pytest.approx(4.0)
    assert row["tracking_z"] == pytest.approx(1.959963984540054)
    assert row["bias"] == pytest.approx(40 / 440)
    assert not row["flag_tracking_signal"] and not row["flagged"]  # 1.96 is within 2.576
    stricter = VarianceRules(horizons=(1,), window=4, tracking_z_threshold=1.9)
    facts = variance_facts(_actuals("region:APAC", actual), forecasts, targets, date(2026, 6, 1), stricter)
    row = facts.iloc[0]
    assert row["flag_tracking_signal"] and row["flag_forecast"] and not row["flag_interval"]
    assert row["flag_reasons"] == "errors lean one way: +2.0 sigma over 4 months (limit ±1.9)"
    # The same lean in a series whose forecasts stated half the spread is twice as many sigmas.
    narrow = forecasts.assign(lo95=forecasts["forecast"] - 10, hi95=forecasts["forecast"] + 10)
    facts = variance_facts(_actuals("region:APAC", actual), narrow, targets, date(2026, 6, 1), default)
    assert facts["tracking_z"].iloc[0] == pytest.approx(2 * 1.959963984540054)
    assert facts["flag_tracking_signal"].iloc[0]


def test_an_unusual_miss_too_small_to_matter_is_not_flagged() -> None:
    """A member outside its interval by an amount under the materiality limit is recorded, not flagged."""
    rows = [
        _forecast("total:all", "2026-06-01", 1, 10_000.0, "2026-06-01"),
        _forecast("category:Toys", "2026-06-01", 1, 50.0, "2026-06-01"),
    ]
    toys_sold = [50.0] * 5 + [0.0]
    actuals = pd.concat([_actuals("total:all", [10_000.0] * 6), _actuals("category:Toys", toys_sold)])
    targets = pd.DataFrame(columns=_targets().columns)
    facts = variance_facts(actuals, pd.DataFrame(rows), targets, date(2026, 6, 1), RULES)
    toys = facts.set_index("series_id").loc["category:Toys"]
    # Toys sold nothing against a forecast of 50 in [30, 70]; 1% of the month's 10,000 is 100.
    assert toys["flag_interval"] and not toys["material"]
    assert not toys["flag_forecast"] and not toys["flagged"]
    assert toys["materiality_threshold"] == pytest.approx(100.0) and pd.isna(toys["flag_reasons"])
    by_amount = VarianceRules(horizons=(1, 3), window=4, materiality_share=0.0, materiality_amount=40.0)
    facts = variance_facts(actuals, pd.DataFrame(rows), targets, date(2026, 6, 1), by_amount)
    toys = facts.set_index("series_id").loc["category:Toys"]
    assert toys["flag_forecast"]
    assert toys["flag_reasons"] == "actual 0 outside the stated 95% interval [30, 70]"


def _simulated(series: int, shift: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Actuals and lead-1 / lead-3 forecasts of ``series`` series over 18 months, forecast for the last 6.

    Each month's actual is mu + u + v. Three months ahead the forecast knows mu and states sigma3; one month
    ahead it also knows u and states sigma1 (< sigma3), so each lead's error is exactly as wide as its stated
    interval: the data behave as forecast. ``shift`` moves every actual by that many sigma1 (a bias)."""
    rng = np.random.default_rng(seed)
    months = pd.date_range("2025-01-01", periods=18, freq="MS")
    actual_frames, forecast_rows = [], []
    for i in range(series):
        member = f"R{i:03d}"
        mu = rng.uniform(100.0, 1_000.0)
        sigma1 = mu * rng.uniform(0.05, 0.3)
        sigma3 = 1.5 * sigma1
        u = rng.normal(0.0, (sigma3**2 - sigma1**2) ** 0.5, len(months))
        v = rng.normal(0.0, sigma1, len(months))
        actual = mu + u + v + shift * sigma1
        names = {"series_id": f"region:{member}", "level": "region", "member": member}
        actual_frames.append(pd.DataFrame({**names, "period_start": months, "actual": actual}))
        for t in range(12, len(months)):
            for horizon, point, sigma in ((1, mu + u[t], sigma1), (3, mu, sigma3)):
                forecast_rows.append({"series_id": f"region:{member}", "level": "region", "member": member,
                                      "period_start": months[t], "horizon": horizon, "model": "sim",
                                      "forecast_as_of": months[t - horizon + 1], "forecast": point,
                                      "lo80": point - 1.2816 * sigma, "hi80": point + 1.2816 * sigma,
                                      "lo95": point - Z95 * sigma, "hi95": point + Z95 * sigma})  # fmt: skip
    return pd.concat(actual_frames, ignore_index=True), pd.DataFrame(forecast_rows)


def test_on_forecast_data_is_flagged_about_as_often_as_the_intervals_miss() -> None:
    """400 series that behave exactly as forecast, two leads each: the 95% intervals miss about 5% of
    comparisons and the tracking flag (1% for each honest window) adds little, so the forecast flag
    (materiality off) fires on 3-9% of them. The rule it replaced, |actual - forecast| > 10% of the
    forecast, fired on over a third of the same comparisons. Forecasts that run 1.5 sigma low are flagged on
    over half."""
    rules = VarianceRules(horizons=(1, 3), window=6, materiality_share=0.0)
    no_targets = pd.DataFrame(columns=_targets().columns)
    last = date(2026, 6, 1)
    actuals, forecasts = _simulated(400, shift=0.0, seed=20261201)
    facts = variance_facts(actuals, forecasts, no_targets, last, rules)
    assert len(facts) == 800
    assert 0.03 <= facts["flag_interval"].mean() <= 0.07
    assert facts["flag_tracking_signal"].mean() <= 0.025
    assert 0.03 <= facts["flag_forecast"].mean() <= 0.09
    assert (facts["variance_pct"].abs() > 0.10).mean() > 1 / 3

    actuals, forecasts = _simulated(400, shift=1.5, seed=20261201)
    biased = variance_facts(actuals, forecasts, no_targets, last, rules)
    assert biased["flag_forecast"].mean() > 0.5


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
    assert row["flag_interval"] and row["flag_forecast"]
    assert row["flag_reasons"] == "actual 0 outside the stated 95% interval [30, 70]"
    # A zero forecast has no percent variance rather than an infinite one.
    zero = pd.DataFrame([_forecast("category:Toys", "2026-06-01", 1, 0.0, "2026-06-01")])
    facts = variance_facts(filled, zero, pd.DataFrame(columns=_targets().columns), date(2026, 6, 1), RULES)
    assert pd.isna(facts["variance_pct"].iloc[0]) and not facts["flagged"].iloc[0]


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
        VarianceRules(tracking_z_threshold=0)
    with pytest.raises(ValueError, match="materiality"):
        VarianceRules(materiality_share=1.0)
    with pytest.raises(ValueError, match="materiality"):
        VarianceRules(materiality_amount=-1.0)
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
        flags={"forecast": int(facts["flag_forecast"].sum()), "target": int(facts["flag_target"].sum())},
        report="/tmp/r/index.html",
    )
    assert alert is not None
    assert alert.subject == "[SalesPulse] variance 2026-06-01: 2 of 2 forecast comparison(s) flagged"
    assert "region:EMEA h=1: actual 85 vs forecast 100 (-15.0%): vs target -15.0% (limit ±10%)" in alert.text
    assert "Flags raised: forecast 0, target 2" in alert.text
    assert "Report: /tmp/r/index.html" in alert.text
    assert alert.payload["flags"] == {"forecast": 0, "target": 2}
    assert variance_alert(dag_id="d", run_id="r", period="p", flagged=[], total=0, facts=3, flags={}) is None


# -- the warehouse step ------------------------------------------------------------------------------------

META = {"_batch_id": "b", "_run_id": "r", "_loaded_at": datetime(2026, 1, 1)}


# The hand-worked customers: the EMEA one, and (unless left out) an APAC one buying the same amounts, so
# that every level has two members (a level with one member repeats the total and is not forecast).
CUSTOMERS = (
    {"customer_id": "C1", "customer_name": "張偉", "region": "EMEA", "segment": "SMB", "sales_owner": "王芳",
     "product_id": "P1", "product_name": "Drill", "category": "Tools"},
    {"customer_id": "C2", "customer_name": "Ольга Иванова", "region": "APAC", "segment": "Enterprise",
     "sales_owner": "Ali", "product_id": "P2", "product_name": "Hose", "category": "Garden"},
)  # fmt: skip


def _load_core(engine, monthly: list[float], customers: int = 2) -> None:  # type: ignore[no-untyped-def]
    """The EMEA customer (owned by 王芳, buying Tools) and, with ``customers=2``, the APAC one (owned by Ali,
    buying Garden), each ordering once a month for the given amounts; June's targets: EMEA 100, 王芳 120."""
    people = CUSTOMERS[:customers]
    dims = [
        pd.DataFrame([{k: c[k] for k in keys} | META for c in people])
        for keys in (
            ("customer_id", "customer_name", "region", "segment", "sales_owner"),
            ("product_id", "product_name", "category"),
        )
    ]
    orders = pd.DataFrame(
        [
            {"order_id": f"O{c['customer_id']}-{i}", "customer_id": c["customer_id"],
             "order_date": (m + pd.Timedelta(days=14)).date(), "status": "completed", **META}
            for c in people
            for i, m in enumerate(MONTHS)
        ]
    )  # fmt: skip
    lines = pd.DataFrame(
        [
            {"order_id": f"O{c['customer_id']}-{i}", "line_number": 1, "product_id": c["product_id"],
             "quantity": 1, "unit_price": v, "discount_pct": 0.0, **META}
            for c in people
            for i, v in enumerate(monthly)
        ]
    )  # fmt: skip
    targets = pd.DataFrame(
        [
            {"period_start": date(2026, 6, 1), "level": "region", "member": "EMEA", "target_amount": 100.0,
             **META},
            {"period_start": date(2026, 6, 1), "level": "sales_owner", "member": "王芳",
             "target_amount": 120.0, **META},
        ]
    )  # fmt: skip
    with engine.begin() as conn:
        bulk_insert(conn, "core", "dim_customer", dims[0])
        bulk_insert(conn, "core", "dim_product", dims[1])
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
    assert bool(emea.loc[1, "flagged"]) and emea.loc[1, "flag_reasons"] == "vs target -15.0% (limit ±10%)"
    assert not emea[["flag_forecast", "flag_interval", "flag_tracking_signal"]].to_numpy().any()
    # The sales owner's name, in Chinese, is a member like any other and survives the round trip.
    owner = jun[jun["level"] == "sales_owner"]
    assert owner["member"].tolist() == ["王芳", "王芳"]
    assert owner.set_index("horizon").loc[1, "variance_abs"] == pytest.approx(-15.0)
    # Both series' actual (85) is inside what both leads stated, and misses its target: EMEA's 100 by -15%,
    # 王芳's 120 by -29.2%. Target flags only, one per lead.
    assert june.flagged_rows == 4 and june.flags["target"] == 4 and june.flags["forecast"] == 0
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


def test_bias_by_level_and_member_over_the_last_months() -> None:
    """Two regions over two months, one lead: EMEA ran 10 and 20 above forecasts of 100 (bias 30 / 330),
    APAC 10 below each (-20 / 180); the level as a whole (30 - 20) / 510. A month before the window is
    left out."""
    rows = []
    for month, emea, apac in (
        ("2026-04-01", 500.0, 500.0),
        ("2026-05-01", 110.0, 90.0),
        ("2026-06-01", 120.0, 90.0),
    ):
        for member, actual in (("EMEA", emea), ("APAC", apac)):
            rows.append({"level": "region", "member": member, "period_start": pd.Timestamp(month),
                         "horizon": 1, "actual": actual, "forecast": 100.0,
                         "within_interval_80": actual <= 110, "within_interval_95": True})  # fmt: skip
    facts = pd.DataFrame(rows)
    level = bias_by_level(facts, date(2026, 6, 1), months=2).iloc[0]
    assert level["months"] == 2 and level["comparisons"] == 4
    assert level["bias"] == pytest.approx(10 / 410) and level["wape"] == pytest.approx(50 / 410)
    assert level["coverage_80"] == pytest.approx(0.75) and level["coverage_95"] == 1.0
    members = bias_by_level(facts, date(2026, 6, 1), months=2, by=("level", "member")).set_index("member")
    assert members.loc["EMEA", "bias"] == pytest.approx(30 / 230)
    assert members.loc["APAC", "bias"] == pytest.approx(-20 / 180)
