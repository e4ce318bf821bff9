"""Price / volume / mix and the customer bridge: worked by hand, and exact on random data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from salespulse.drivers import customer_bridge, price_volume_mix, reconciles


def _lines(rows: list[tuple[str, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["product_id", "quantity", "revenue"])


BASELINE = _lines([("A", 10, 100.0), ("B", 10, 200.0)])  # R 300, Q 20, average price 15


def test_price_volume_mix_by_hand() -> None:
    # A sells twice as much at 11 instead of 10; B is unchanged.  R 300 -> 420.
    current = _lines([("A", 12, 132.0), ("A", 8, 88.0), ("B", 10, 200.0)])
    split = price_volume_mix(BASELINE, current)
    assert split.volume == pytest.approx((30 - 20) * 15)  # 150
    assert split.mix == pytest.approx(30 * ((2 / 3 - 1 / 2) * 10 + (1 / 3 - 1 / 2) * 20))  # -50
    assert split.price == pytest.approx(20 * (11 - 10))  # 20
    assert split.volume + split.mix + split.price == pytest.approx(split.change) == pytest.approx(120)


def test_a_new_product_is_mix_and_a_dropped_one_too() -> None:
    current = _lines([("A", 20, 220.0), ("B", 10, 200.0), ("C", 5, 50.0)])  # C is new; R 470, Q 35
    split = price_volume_mix(BASELINE, current)
    assert split.volume == pytest.approx(15 * 15)  # 225
    assert split.mix == pytest.approx((20 - 17.5) * 10 + (10 - 17.5) * 20 + 5 * 10)  # -75
    assert split.price == pytest.approx(20)
    items = split.items.set_index("product_id")
    assert items.loc["C", "price_effect"] == 0 and items.loc["C", "mix_effect"] == pytest.approx(50)
    dropped = price_volume_mix(BASELINE, _lines([("A", 10, 100.0)]))  # B no longer sold: R 100
    assert dropped.volume == pytest.approx(-10 * 15) and dropped.price == 0
    assert dropped.mix == pytest.approx(10 * (1 - 0.5) * 10 + 10 * (0 - 0.5) * 20)  # -50
    assert dropped.volume + dropped.mix + dropped.price == pytest.approx(-200)


def test_nothing_sold_on_one_side() -> None:
    empty = _lines([])
    first = price_volume_mix(empty, BASELINE)
    assert (first.volume, first.mix, first.price) == (300.0, 0.0, 0.0)
    gone = price_volume_mix(BASELINE, empty)
    assert gone.volume == pytest.approx(-300) and gone.mix == 0 and gone.price == 0


def test_returns_are_refused() -> None:
    with pytest.raises(ValueError, match="quantities must be positive"):
        price_volume_mix(BASELINE, _lines([("A", -1, -10.0)]))


@pytest.mark.parametrize("seed", range(20))
def test_the_parts_add_up_exactly_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)

    def period(n: int, products: int) -> pd.DataFrame:
        quantity = rng.integers(1, 50, n)
        price = rng.lognormal(3, 1, products)[rng.integers(0, products, n)] * rng.uniform(0.8, 1.2, n)
        product = rng.integers(0, products, n)
        return pd.DataFrame({"product_id": product, "quantity": quantity, "revenue": quantity * price})

    baseline, current = period(int(rng.integers(1, 400)), 30), period(int(rng.integers(1, 400)), 40)
    split = price_volume_mix(baseline, current)
    scale = baseline["revenue"].sum() + current["revenue"].sum()
    assert reconciles([split.volume, split.mix, split.price], split.change, scale)
    assert split.mix == pytest.approx(split.items["mix_effect"].sum())


def test_customer_bridge_by_hand() -> None:
    baseline = pd.DataFrame({"customer_id": ["c1", "c2", "c1"], "revenue": [60.0, 50.0, 40.0]})
    current = pd.DataFrame({"customer_id": ["c1", "c3"], "revenue": [120.0, 30.0]})
    bridge = customer_bridge(baseline, current).set_index("step")
    assert bridge["amount"].to_dict() == {
        "baseline": 150.0,
        "new_customers": 30.0,
        "lost_customers": -50.0,
        "returning_change": 20.0,
        "current": 150.0,
    }
    assert bridge["customers"].to_dict() == {
        "baseline": 2,
        "new_customers": 1,
        "lost_customers": 1,
        "returning_change": 1,
        "current": 2,
    }
    middle = bridge.loc[["new_customers", "lost_customers", "returning_change"], "amount"]
    assert reconciles(middle.to_list(), bridge.loc["current", "amount"] - bridge.loc["baseline", "amount"])
