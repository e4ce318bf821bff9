"""Coherent forecasts: hand-worked projections, coherence on random hierarchies, and the forecast step."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from salespulse.forecast import Z95, complete_months, forecast_filled
from salespulse.reconcile import constraint_matrix, incoherence, project, reconcile


def _rows(values: dict[str, tuple[float, float]], period: str = "2026-06-01") -> pd.DataFrame:
    """series_id -> (forecast, standard deviation); the 95% bounds carry the deviation."""
    rows = []
    for series_id, (mean, sd) in values.items():
        level, member = series_id.split(":")
        rows.append(
            {
                "series_id": series_id,
                "level": level,
                "member": member,
                "period_start": pd.Timestamp(period),
                "forecast": mean,
                "lo80": mean - 1.2816 * sd,
                "hi80": mean + 1.2816 * sd,
                "lo95": mean - Z95 * sd,
                "hi95": mean + Z95 * sd,
            }
        )
    return pd.DataFrame(rows)


def test_equal_variances_split_the_gap_evenly() -> None:
    """Total 100, A 40, B 50: the gap of 10 is shared in thirds (C = [1, -1, -1], W = I).
    Total 96.67, A 43.33, B 53.33."""
    out = reconcile(_rows({"total:all": (100, 1), "region:A": (40, 1), "region:B": (50, 1)})).forecasts
    got = out.set_index("series_id")["forecast"]
    assert got["total:all"] == pytest.approx(100 - 10 / 3)
    assert got["region:A"] == pytest.approx(40 + 10 / 3)
    assert got["region:B"] == pytest.approx(50 + 10 / 3)
    assert out.set_index("series_id")["base_forecast"]["total:all"] == 100


def test_the_uncertain_series_takes_more_of_the_adjustment() -> None:
    """W = diag(4, 1, 1) (the total's deviation is 2): C W C' = 6, the shift is W C' * 10 / 6 = (-6.67,
    +1.67, +1.67): total 93.33, A 41.67, B 51.67. The bounds move with their mean."""
    out = reconcile(_rows({"total:all": (100, 2), "region:A": (40, 1), "region:B": (50, 1)})).forecasts
    got = out.set_index("series_id")
    assert got.loc["total:all", "forecast"] == pytest.approx(100 - 40 / 6)
    assert got.loc["region:A", "forecast"] == pytest.approx(40 + 10 / 6)
    assert got.loc["region:B", "forecast"] == pytest.approx(50 + 10 / 6)
    width = got["hi95"] - got["lo95"]
    assert width.to_numpy() == pytest.approx([4 * Z95, 2 * Z95, 2 * Z95])
    assert got.loc["region:A", "lo95"] == pytest.approx(40 + 10 / 6 - Z95)


def test_several_groupings_of_the_same_total_all_add_up() -> None:
    rng = np.random.default_rng(7)
    frames = []
    for period in pd.date_range("2026-01-01", periods=6, freq="MS"):
        total = rng.uniform(900, 1100)
        values = {"total:all": (total, rng.uniform(20, 80))}
        for level, members in (("region", 4), ("segment", 3), ("category", 6), ("sales_owner", 12)):
            # Members that roughly add up (each off by up to 15%), as separately fitted models do.
            shares = rng.dirichlet(np.full(members, 3.0))
            for k in range(members):
                values[f"{level}:{k}"] = (total * shares[k] * rng.uniform(0.85, 1.15), rng.uniform(5, 60))
        frames.append(_rows(values, str(period.date())))
    base = pd.concat(frames, ignore_index=True)
    assert incoherence(base) > 10
    result = reconcile(base)
    assert result.clipped == 0
    assert result.max_incoherence < 1e-6
    assert incoherence(result.forecasts) < 1e-6
    # Already coherent forecasts are left as they are.
    again = reconcile(result.forecasts)
    assert np.allclose(again.forecasts["forecast"], result.forecasts["forecast"], rtol=0, atol=1e-8)


def test_a_coherent_input_is_a_fixed_point_and_none_keeps_the_base() -> None:
    coherent = _rows({"total:all": (90, 3), "region:A": (40, 1), "region:B": (50, 2)})
    assert reconcile(coherent).forecasts["forecast"].tolist() == pytest.approx([90, 40, 50])
    messy = _rows({"total:all": (100, 3), "region:A": (40, 1), "region:B": (50, 2)})
    untouched = reconcile(messy, "none")
    assert untouched.forecasts["forecast"].tolist() == [100, 40, 50] and untouched.max_incoherence == 10
    with pytest.raises(ValueError, match="one of"):
        reconcile(messy, "mint_full")


def test_the_projection_matches_the_closed_form() -> None:
    levels = pd.Series(["total", "region", "region", "segment", "segment"])
    c = constraint_matrix(levels)
    assert c.tolist() == [[1, -1, -1, 0, 0], [1, 0, 0, -1, -1]]
    base = np.array([100.0, 30.0, 60.0, 55.0, 50.0])
    w = np.array([9.0, 1.0, 4.0, 1.0, 1.0])
    got = project(base, c, w)
    expected = base - np.diag(w) @ c.T @ np.linalg.inv(c @ np.diag(w) @ c.T) @ c @ base
    assert got == pytest.approx(expected)
    assert (c @ got) == pytest.approx([0, 0])
    with pytest.raises(ValueError, match="exactly one total"):
        constraint_matrix(pd.Series(["region", "region"]))


def test_the_forecast_step_writes_coherent_snapshots() -> None:
    """Three regions with different seasonal shapes and a total that is their sum: the base models don't
    add up, the snapshot does, at every horizon, and the base forecasts are kept beside it."""
    months = pd.date_range("2023-01-01", periods=40, freq="MS")
    t = np.arange(len(months))
    rng = np.random.default_rng(3)
    regions = {
        "A": 100 + 20 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 5, len(t)),
        "B": 60 + 0.8 * t + rng.normal(0, 6, len(t)),
        "C": 40 + 10 * np.cos(2 * np.pi * t / 12) + rng.normal(0, 3, len(t)),
    }
    frames = [
        pd.DataFrame({"series_id": f"region:{k}", "level": "region", "member": k, "period_start": months,
                      "revenue": v})
        for k, v in regions.items()
    ]  # fmt: skip
    frames.append(
        pd.DataFrame({"series_id": "total:all", "level": "total", "member": "all", "period_start": months,
                      "revenue": sum(regions.values())})
    )  # fmt: skip
    series = pd.concat(frames, ignore_index=True)
    as_of = date(2026, 5, 1)
    base, _, _ = forecast_filled(complete_months(series, as_of), as_of, horizon=4, folds=2)
    snapshot = reconcile(base, "wls_var").forecasts.assign(reconciliation="wls_var")
    assert incoherence(snapshot) < 1e-6
    assert (snapshot["reconciliation"] == "wls_var").all()
    assert incoherence(snapshot.assign(forecast=snapshot["base_forecast"])) > 1e-3
    assert (snapshot["lo95"] <= snapshot["forecast"]).all() and (
        snapshot["forecast"] <= snapshot["hi95"]
    ).all()


def test_a_crossing_adds_up_to_its_levels_and_to_the_total() -> None:
    """region x segment: each region is the sum of its crossings, each segment too, and all of them the
    total. The constraints repeat each other (the projection must cope with that)."""
    rng = np.random.default_rng(3)
    regions, segments = ["EMEA", "APAC", "AMER"], ["SMB", "Enterprise"]
    values = {"total:all": (1000.0, 40.0)}
    for r in regions:
        values[f"region:{r}"] = (rng.uniform(250, 400), rng.uniform(10, 30))
    for s in segments:
        values[f"segment:{s}"] = (rng.uniform(400, 600), rng.uniform(10, 30))
    for r in regions:
        for s in segments:
            values[f"region*segment:{r} | {s}"] = (rng.uniform(120, 200), rng.uniform(5, 20))
    base = _rows(values)
    c = constraint_matrix(base["level"], base["member"])
    assert c.shape == (3 + 3 + 2, len(base))  # 3 levels to the total, 3 regions, 2 segments
    assert np.linalg.matrix_rank(c) < c.shape[0]
    result = reconcile(base).forecasts.set_index("series_id")["forecast"]
    assert abs(result["total:all"] - sum(result[f"region:{r}"] for r in regions)) < 1e-6
    for r in regions:
        crossings = sum(result[f"region*segment:{r} | {s}"] for s in segments)
        assert crossings == pytest.approx(result[f"region:{r}"], abs=1e-6)
    for s in segments:
        crossings = sum(result[f"region*segment:{r} | {s}"] for r in regions)
        assert crossings == pytest.approx(result[f"segment:{s}"], abs=1e-6)
    assert incoherence(reconcile(base).forecasts) < 1e-6
    assert incoherence(base) > 1.0
