"""The funnel forecast: stage rates, placement and the combined forecast worked by hand, and the win rates
learned from generated data against the generator's own funnel."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from salespulse.funnel import (
    FunnelRules,
    combine,
    cycle_lengths,
    funnel_forecast,
    monthly_bookings,
    stage_rates,
)
from salespulse.generator import DEFAULT_END, STAGE_ADVANCE, generate_crm

AS_OF = date(2026, 7, 1)
RULES = FunnelRules(min_deals=1, horizon=3, funnel_months=2)


def _deal(
    deal_id, stage, last_open, amount, created, closed=None, expected=None, customer="C1", probability=0.5
):
    return {
        "opportunity_id": deal_id,
        "customer_id": customer,
        "stage": stage,
        "last_open_stage": last_open,
        "amount": amount,
        "probability": probability,
        "created_date": pd.Timestamp(created),
        "expected_close_date": pd.Timestamp(expected) if expected else pd.NaT,
        "closed_date": pd.Timestamp(closed) if closed else pd.NaT,
    }


def _funnel() -> pd.DataFrame:
    return pd.DataFrame(
        [
            # Won: 59 and 89 days from created to closed.
            _deal("W1", "closed_won", "negotiation", 1200, "2026-01-01", "2026-03-01"),
            _deal("W2", "closed_won", "negotiation", 2400, "2026-02-01", "2026-05-01"),
            # Lost from each open stage.
            _deal("L1", "closed_lost", "prospecting", 500, "2026-02-01", "2026-02-11"),
            _deal("L2", "closed_lost", "qualification", 500, "2026-02-01", "2026-02-21"),
            _deal("L3", "closed_lost", "proposal", 500, "2026-02-01", "2026-03-03"),
            _deal("L4", "closed_lost", "negotiation", 500, "2026-02-01", "2026-04-02"),
            # Closed more than a year before the as-of date: outside the look-back.
            _deal("OLD", "closed_lost", "prospecting", 500, "2025-01-01", "2025-02-01"),
            # Open on the as-of date.
            _deal("O1", "proposal", "proposal", 1000, "2026-06-01", expected="2026-08-10"),
            _deal(
                "O2", "negotiation", "negotiation", 300, "2026-06-01", expected="2026-05-01", customer="C2"
            ),
            _deal("O3", "prospecting", "prospecting", 600, "2026-01-01"),
        ]
    )


CUSTOMERS = pd.DataFrame(
    {
        "customer_id": ["C1", "C2"],
        "region": ["EMEA", "APAC"],
        "segment": ["SMB", "SMB"],
        "sales_owner": ["王芳", "Lee"],
    }
)


def test_stage_win_rates_and_conversion_match_a_hand_count() -> None:
    # Reached: prospecting 6 (all), qualification 5, proposal 4, negotiation 3 (W1, W2, L4); 2 won.
    rates = stage_rates(_funnel(), AS_OF, RULES).set_index("stage")
    assert rates["deals_reached"].tolist() == [6, 5, 4, 3]
    assert rates["deals_won"].tolist() == [2, 2, 2, 2]
    assert rates["win_rate"].tolist() == pytest.approx([2 / 6, 2 / 5, 2 / 4, 2 / 3])
    assert rates["conversion_to_next"].tolist() == pytest.approx([5 / 6, 4 / 5, 3 / 4, 2 / 3])
    assert set(rates["source"]) == {"history"}
    # The pipeline by stage: O3 in prospecting, O1 in proposal, O2 in negotiation.
    assert rates["open_deals"].tolist() == [1, 0, 1, 1]
    assert rates["open_amount"].tolist() == pytest.approx([600, 0, 1000, 300])
    # With too few closed deals behind a stage, the reps' probability is used instead.
    thin = stage_rates(_funnel(), AS_OF, FunnelRules(min_deals=4)).set_index("stage")
    assert thin.loc["negotiation", "source"] == "rep"
    assert thin.loc["negotiation", "probability_used"] == pytest.approx(0.5)
    assert thin.loc["proposal", "source"] == "history"


def test_sales_cycle_counts_days_from_created_to_closed() -> None:
    cycles = cycle_lengths(_funnel(), AS_OF, RULES).set_index("outcome")
    assert cycles.loc["won", "deals"] == 2
    assert cycles.loc["won", "median_days"] == pytest.approx((59 + 89) / 2)
    assert cycles.loc["closed", "deals"] == 6


def test_open_deals_are_weighted_by_win_rate_and_placed_by_expected_close_month() -> None:
    """O1 proposal 1000 x 1/2 in August (its date); O2 negotiation 300 x 2/3: its date is past, so it is
    30 days old against a 74-day median cycle and placed 44 days on, in August; O3 prospecting 600 x 1/3 has
    no date and is older than the median cycle: July."""
    forecast, _, _ = funnel_forecast(_funnel(), CUSTOMERS, AS_OF, RULES)
    rows = forecast.set_index(["series_id", "period_start"])
    july, august, september = (pd.Timestamp(f"2026-{m:02d}-01") for m in (7, 8, 9))
    assert rows.loc[("total:all", july), "expected_bookings"] == pytest.approx(200)
    assert rows.loc[("total:all", august), "expected_bookings"] == pytest.approx(700)
    assert rows.loc[("total:all", august), "open_deals"] == 2
    assert rows.loc[("total:all", august), "pipeline_amount"] == pytest.approx(1300)
    assert rows.loc[("total:all", september), "expected_bookings"] == 0
    assert rows.loc[("region:EMEA", august), "expected_bookings"] == pytest.approx(500)
    assert rows.loc[("region:APAC", august), "expected_bookings"] == pytest.approx(200)
    assert rows.loc[("sales_owner:王芳", july), "expected_bookings"] == pytest.approx(200)
    assert forecast.groupby("period_start")["horizon"].first().tolist() == [1, 2, 3]
    # Every level splits the same total.
    for _, level in forecast[forecast["level"] != "total"].groupby("level"):
        assert level["expected_bookings"].sum() == pytest.approx(900)


def test_the_combined_forecast_adds_the_pipeline_above_the_usual_bookings_for_the_near_months() -> None:
    """Won in the 12 months before July: 1200 + 2400, so 300 a month. July: 1000 + 200 - 300 = 900;
    August: 1100 + 700 - 300 = 1500; September is past the funnel months: the statistical 1200."""
    forecast, _, _ = funnel_forecast(_funnel(), CUSTOMERS, AS_OF, RULES)
    typical = monthly_bookings(_funnel(), CUSTOMERS, AS_OF)
    assert typical.set_index("series_id").loc["total:all", "typical_bookings"] == pytest.approx(300)
    statistical = pd.DataFrame(
        {
            "series_id": "total:all",
            "period_start": pd.date_range("2026-07-01", periods=3, freq="MS"),
            "forecast": [1000.0, 1100.0, 1200.0],
        }
    )
    combined = combine(forecast, statistical, typical, RULES)
    total = combined[combined["series_id"] == "total:all"].sort_values("period_start")
    assert total["combined_forecast"].tolist() == pytest.approx([900, 1500, 1200])
    # A series the statistical forecast lacks keeps no combined figure rather than a made-up one.
    assert combined.loc[combined["series_id"] == "region:APAC", "combined_forecast"].isna().all()


def test_win_rates_learned_from_generated_deals_match_the_generators_funnel() -> None:
    """The generator moves a deal on from each stage with STAGE_ADVANCE; the chance to win from stage i is
    the product of the rest. Learned from the deals as they stood at the end of the data."""
    deals = generate_crm(3000, seed=8)["opportunities"]
    latest = deals[~deals["opportunity_id"].duplicated(keep="last")]
    rates = stage_rates(latest, DEFAULT_END).set_index("stage")
    truth = [float(np.prod(STAGE_ADVANCE[i:])) for i in range(len(STAGE_ADVANCE))]
    assert rates["win_rate"].tolist() == pytest.approx(truth, abs=0.04)
    assert rates["conversion_to_next"].tolist() == pytest.approx(list(STAGE_ADVANCE), abs=0.04)


def test_the_generated_funnel_shows_each_deal_as_it_stood_on_a_date() -> None:
    """Versions: a deal closed after a date is open in its latest version before that date."""
    deals = generate_crm(3000, seed=8)["opportunities"]
    cutoff = pd.Timestamp("2026-06-01")
    closed_later = deals[(deals["closed_date"] >= cutoff) & (deals["created_date"] < cutoff)]
    assert len(closed_later) > 10
    known = deals[deals["updated_at"] < cutoff]
    as_then = known[~known["opportunity_id"].duplicated(keep="last")].set_index("opportunity_id")
    states = as_then.loc[closed_later["opportunity_id"], "stage"]
    assert not states.str.startswith("closed").any()
    # Versions move forward through the funnel, one row per stage entered, closed last.
    order = {s: i for i, s in enumerate(["prospecting", "qualification", "proposal", "negotiation"])}
    sample = deals[deals["opportunity_id"].isin(deals["opportunity_id"].unique()[:500])]
    for _, versions in sample.groupby("opportunity_id"):
        steps = versions["stage"].map(order).dropna().tolist()
        assert steps == list(range(len(steps)))
        assert versions["updated_at"].is_monotonic_increasing
