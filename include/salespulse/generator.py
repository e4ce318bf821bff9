"""A deterministic, seeded generator of CRM data: the demo's source and the tests' fixtures.

It writes what a CRM exports: customers, products, orders, order lines, interactions, funnel
opportunities and sales targets. The data has what forecasting and segmentation need to be
meaningful (a growing customer base, seasonality, customers at every lifecycle stage, a funnel
with realistic stage conversion, targets) and a small, known share of defects that the quality
gate must catch. Every defect is listed in :attr:`CrmDataset.defects` by the keys it touched.

Everything is vectorised with NumPy; 1M customers (about 12.5M order lines) fit in memory (11.7 GB at
peak); :func:`write_crm_in_parts` writes larger populations as Parquet parts, holding one part at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Engine, text

from salespulse.model import ENTITIES, FUNNEL_STAGES, Entity, get_entity

DEFAULT_START = date(2023, 11, 1)
DEFAULT_END = date(2026, 10, 31)  # last day of generated activity; fixed so the data set is reproducible

REGIONS = {
    # region: (share of customers, countries, share of Chinese-script names)
    "North America": (0.35, ("US", "CA", "MX"), 0.04),
    "EMEA": (0.30, ("GB", "DE", "FR", "NL", "ES", "IT", "SE"), 0.03),
    "APAC": (0.25, ("CN", "TW", "HK", "SG", "JP", "AU"), 0.65),
    "LATAM": (0.10, ("BR", "AR", "CL", "CO"), 0.02),
}
PHONE_PREFIX = {
    "US": "+1",
    "CA": "+1",
    "MX": "+52",
    "GB": "+44",
    "DE": "+49",
    "FR": "+33",
    "NL": "+31",
    "ES": "+34",
    "IT": "+39",
    "SE": "+46",
    "CN": "+86",
    "TW": "+886",
    "HK": "+852",
    "SG": "+65",
    "JP": "+81",
    "AU": "+61",
    "BR": "+55",
    "AR": "+54",
    "CL": "+56",
    "CO": "+57",
}
SEGMENTS = {
    # segment: (share, mean orders per 30 days, mean lifetime in days, quantity scale, deal size)
    "SMB": (0.70, 0.35, 420, 2.0, 8_000.0),
    "Mid-Market": (0.22, 0.55, 600, 5.0, 30_000.0),
    "Enterprise": (0.08, 0.80, 900, 12.0, 120_000.0),
}
CHANNELS = ("online", "direct", "partner")
INDUSTRIES = ("Retail", "Manufacturing", "Healthcare", "Finance", "Education", "Logistics", "Hospitality")
CATEGORIES = {
    # category: (number of products, median list price)
    "Hardware": (30, 420.0),
    "Software": (25, 180.0),
    "Services": (15, 950.0),
    "Accessories": (30, 35.0),
    "Consumables": (25, 12.0),
    "Training": (10, 600.0),
}
LATIN_GIVEN = (
    "Anna",
    "Lukas",
    "Sofia",
    "Mateo",
    "Emma",
    "Noah",
    "Olivia",
    "Liam",
    "Chloé",
    "José",
    "Zoë",
    "Björn",
    "Ana",
    "Diego",
    "Marta",
    "Pierre",
    "Ingrid",
    "Tomás",
    "Amélie",
    "Jan",
)
LATIN_FAMILY = (
    "Müller",
    "García",
    "Smith",
    "Rossi",
    "Dubois",
    "Jansen",
    "Silva",
    "Novak",
    "Andersson",
    "Kowalski",
    "Martín",
    "Bianchi",
    "Schmidt",
    "Fernández",
    "Brown",
    "López",
    "Søren",
    "Weber",
)
LATIN_COMPANY = ("Trading", "Logistics", "Supplies", "Systems", "Consulting", "Foods", "Retail", "Works")
CJK_CITY = ("上海", "北京", "深圳", "广州", "杭州", "成都", "台北", "香港", "南京", "苏州")
CJK_WORD = ("恒达", "华信", "金桥", "东方", "新世纪", "瑞丰", "宏图", "天成", "远航", "嘉禾")
CJK_SUFFIX = ("贸易有限公司", "科技有限公司", "实业有限公司", "物流有限公司", "商贸公司")
CJK_PERSON_FAMILY = ("王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周")
CJK_PERSON_GIVEN = ("伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "洋", "艳", "杰", "涛", "明")
INTERACTION_TYPES = ("email", "call", "meeting", "demo", "support_ticket", "web_visit")
OUTCOMES = ("positive", "neutral", "negative")
# Probability that an opportunity in a stage moves to the next one (the last step is the win).
STAGE_ADVANCE = (0.60, 0.62, 0.70, 0.60)
STAGE_DAYS = (12, 18, 20, 15)  # mean days spent in prospecting, qualification, proposal, negotiation
OWNERS_PER_REGION = 3
STAGE_PROBABILITY = {
    "prospecting": 0.10,
    "qualification": 0.20,
    "proposal": 0.40,
    "negotiation": 0.60,
    "closed_won": 1.0,
    "closed_lost": 0.0,
}


@dataclass
class CrmDataset:
    """Every CRM entity as a DataFrame, plus the defects deliberately put into them."""

    tables: dict[str, pd.DataFrame]
    defects: dict[str, list[str]] = field(default_factory=dict)
    seed: int = 0
    n_customers: int = 0

    def __getitem__(self, entity: str) -> pd.DataFrame:
        return self.tables[entity]

    def write_exports(self, folder: Path, formats: tuple[str, ...] = ("parquet", "csv")) -> list[Path]:
        """Write one file per entity and format, as a CRM export would (UTF-8 CSV, Parquet)."""
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for entity, frame in self.tables.items():
            if "parquet" in formats:
                path = folder / f"{entity}.parquet"
                frame.to_parquet(path, index=False)
                written.append(path)
            if "csv" in formats:
                path = folder / f"{entity}.csv"
                frame.to_csv(path, index=False, encoding="utf-8")
                written.append(path)
        return written

    def write_to_database(self, engine: Engine, schema: str = "crm_source") -> None:
        """Fill a source database schema with the same tables, as a CRM's own database would hold them."""
        from salespulse.warehouse import bulk_insert, check_identifier

        with engine.begin() as conn:
            conn.execute(text(f"create schema if not exists {check_identifier(schema)}"))
            for entity, frame in self.tables.items():
                conn.execute(text(f"drop table if exists {schema}.{check_identifier(entity)}"))
                ddl = ", ".join(f"{c} {_SQL_TYPES[k]}" for c, k in _kinds(entity).items())
                conn.execute(text(f"create table {schema}.{entity} ({ddl})"))
                bulk_insert(conn, schema, entity, frame)


_SQL_TYPES = {
    "string": "varchar",
    "date": "date",
    "timestamp": "timestamp",
    "int": "bigint",
    "float": "double precision",
    "bool": "boolean",
}


def _kinds(entity: str) -> dict[str, str]:
    return {c.name: c.kind for c in get_entity(entity).columns}


def _seasonality(months: np.ndarray) -> np.ndarray:
    """Relative demand by calendar month (1-12): a December peak, a summer dip, quarter-end pushes."""
    angle = 2 * np.pi * (months - 12) / 12
    quarter_end = np.isin(months, (3, 6, 9, 12)).astype(float)
    return 1.0 + 0.30 * np.cos(angle) + 0.12 * quarter_end


def _days(start: date, values: np.ndarray) -> np.ndarray:
    return np.datetime64(start, "D") + values.astype("timedelta64[D]")


def _timestamps(day_values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Day dates plus a random time within business hours."""
    seconds = rng.integers(8 * 3600, 19 * 3600, size=len(day_values))
    return day_values.astype("datetime64[s]") + seconds.astype("timedelta64[s]")


def _pick(rng: np.random.Generator, options: tuple[str, ...], size: int, p: list[float] | None = None):
    return np.asarray(options, dtype=object)[rng.choice(len(options), size=size, p=p)]


def _customers(rng: np.random.Generator, n: int, start: date, end: date) -> pd.DataFrame:
    """Customers who signed up from ``start`` on; the caller passes a start before the export window,
    so that the business already has a customer base when its data begins."""
    span = (end - start).days
    # A growing customer base: signup density rises linearly over time (trend in sales).
    growth = 1.0
    u = rng.random(n)
    signup_offset = ((np.sqrt(1 + growth * (2 + growth) * u) - 1) / growth * span).astype(int)
    signup = _days(start, np.clip(signup_offset, 0, span))

    region_names = list(REGIONS)
    region_idx = rng.choice(len(region_names), size=n, p=[REGIONS[r][0] for r in region_names])
    region = np.asarray(region_names, dtype=object)[region_idx]
    country = np.empty(n, dtype=object)
    chinese = np.zeros(n, dtype=bool)
    for i, name in enumerate(region_names):
        mask = region_idx == i
        countries = REGIONS[name][1]
        country[mask] = _pick(rng, countries, int(mask.sum()))
        chinese[mask] = rng.random(int(mask.sum())) < REGIONS[name][2]

    segment_names = list(SEGMENTS)
    segment = _pick(rng, tuple(segment_names), n, [SEGMENTS[s][0] for s in segment_names])

    ids = np.arange(1, n + 1)
    is_company = rng.random(n) < 0.7
    latin_person = _pick(rng, LATIN_GIVEN, n) + " " + _pick(rng, LATIN_FAMILY, n)
    latin_company = _pick(rng, LATIN_FAMILY, n) + " " + _pick(rng, LATIN_COMPANY, n)
    cjk_person = _pick(rng, CJK_PERSON_FAMILY, n) + _pick(rng, CJK_PERSON_GIVEN, n)
    cjk_company = _pick(rng, CJK_CITY, n) + _pick(rng, CJK_WORD, n) + _pick(rng, CJK_SUFFIX, n)
    name = np.where(
        chinese,
        np.where(is_company, cjk_company, cjk_person),
        np.where(is_company, latin_company, latin_person),
    )
    domain = np.where(chinese, "example.cn", "example.com")
    email = np.char.add(np.char.add("contact", ids.astype(str)), "@").astype(object) + domain
    prefix = np.asarray([PHONE_PREFIX[c] for c in country], dtype=object)
    phone = prefix + rng.integers(200_000_000, 999_999_999, size=n).astype(str).astype(object)
    owner_no = rng.integers(1, OWNERS_PER_REGION + 1, size=n).astype(str).astype(object)
    owner = np.char.replace(region.astype(str), " ", "-").astype(object) + "-rep-" + owner_no

    return pd.DataFrame(
        {
            "customer_id": np.char.add("C", np.char.zfill(ids.astype(str), 7)).astype(object),
            "customer_name": name,
            "email": email,
            "phone": phone,
            "country_code": country,
            "region": region,
            "channel": _pick(rng, CHANNELS, n, [0.5, 0.3, 0.2]),
            "industry": _pick(rng, INDUSTRIES, n),
            "segment": segment,
            "sales_owner": owner,
            "signup_date": signup,
            "updated_at": _timestamps(signup, rng),
        }
    )


def _products(rng: np.random.Generator, start: date) -> pd.DataFrame:
    rows = []
    for category, (count, median_price) in CATEGORIES.items():
        prices = np.round(median_price * rng.lognormal(0.0, 0.5, size=count), 2)
        for i in range(count):
            rows.append(
                (f"P-{category[:3].upper()}-{i + 1:03d}", f"{category} item {i + 1}", category, prices[i])
            )
    frame = pd.DataFrame(rows, columns=["product_id", "product_name", "category", "list_price"])
    frame["updated_at"] = np.datetime64(start, "s") - np.timedelta64(30, "D")
    return frame


def _activity_windows(rng: np.random.Generator, customers: pd.DataFrame, end: date):
    """Each customer's active period(s): a first lifetime, and for some churned customers a comeback.

    Returns (customer index, window start day, window end day) as arrays over all windows.
    """
    n = len(customers)
    end_day = np.datetime64(end, "D")
    signup = customers["signup_date"].to_numpy().astype("datetime64[D]")
    life_mean = customers["segment"].map({s: v[2] for s, v in SEGMENTS.items()}).to_numpy(float)
    lifetime = rng.exponential(life_mean).astype(int) + 1
    first_end = np.minimum(signup + lifetime.astype("timedelta64[D]"), end_day)
    churned = first_end < end_day
    # About one churned customer in six comes back after a gap of 4 to 12 months: "reactivated".
    comeback = churned & (rng.random(n) < 0.18)
    gap = rng.integers(120, 365, size=n).astype("timedelta64[D]")
    second_start = first_end + gap
    comeback &= second_start < end_day
    second_life = rng.exponential(life_mean).astype(int).astype("timedelta64[D]") + np.timedelta64(30, "D")
    second_end = np.minimum(second_start + second_life, end_day)
    idx = np.concatenate([np.arange(n), np.flatnonzero(comeback)])
    starts = np.concatenate([signup, second_start[comeback]])
    ends = np.concatenate([first_end, second_end[comeback]])
    return idx, starts, ends


def _orders(rng: np.random.Generator, customers: pd.DataFrame, start: date, end: date):
    n = len(customers)
    rate = (
        rng.gamma(2.0, 0.5, size=n)
        * customers["segment"].map({s: v[1] for s, v in SEGMENTS.items()}).to_numpy()
    )
    idx, starts, ends = _activity_windows(rng, customers, end)
    days = (ends - starts).astype(int) + 1
    peak = _seasonality(np.arange(1, 13)).max()
    # Thinning: draw candidate purchase days at the peak rate, keep each with seasonality/peak.
    candidates = rng.poisson(rate[idx] * days / 30.0 * peak)
    owner = np.repeat(idx, candidates)
    offsets = (rng.random(candidates.sum()) * np.repeat(days, candidates)).astype(int)
    order_day = np.repeat(starts, candidates) + offsets.astype("timedelta64[D]")
    months = order_day.astype("datetime64[M]").astype(int) % 12 + 1
    keep = rng.random(len(order_day)) < _seasonality(months) / peak
    owner, order_day = owner[keep], order_day[keep]
    # Every customer who ever bought made a first purchase on the day they signed up.
    buyer = rng.random(n) < 0.92
    owner = np.concatenate([np.flatnonzero(buyer), owner])
    order_day = np.concatenate(
        [customers["signup_date"].to_numpy().astype("datetime64[D]")[buyer], order_day]
    )
    # The export window starts at ``start``: earlier purchases are history the export does not hold.
    in_window = order_day >= np.datetime64(start, "D")
    owner, order_day = owner[in_window], order_day[in_window]
    order = np.lexsort((owner, order_day))
    owner, order_day = owner[order], order_day[order]
    m = len(owner)
    status = _pick(rng, ("completed", "returned", "cancelled"), m, [0.92, 0.04, 0.04])
    channel = customers["channel"].to_numpy()[owner].copy()
    switch = rng.random(m) < 0.1
    channel[switch] = _pick(rng, CHANNELS, int(switch.sum()))
    orders = pd.DataFrame(
        {
            "order_id": np.char.add("O", np.char.zfill(np.arange(1, m + 1).astype(str), 9)).astype(object),
            "customer_id": customers["customer_id"].to_numpy()[owner],
            "order_date": order_day,
            "status": status,
            "channel": channel,
            "currency": "USD",
            "updated_at": _timestamps(order_day, rng),
        }
    )
    return orders, owner


def _order_lines(
    rng: np.random.Generator, orders: pd.DataFrame, owner_segment: np.ndarray, products: pd.DataFrame
):
    m = len(orders)
    lines_per_order = np.minimum(1 + rng.poisson(1.4, size=m), 8)
    order_idx = np.repeat(np.arange(m), lines_per_order)
    k = len(order_idx)
    starts = np.repeat(np.cumsum(lines_per_order) - lines_per_order, lines_per_order)
    line_number = np.arange(k) - starts + 1
    popularity = 1.0 / np.arange(1, len(products) + 1) ** 0.8
    product_idx = rng.choice(len(products), size=k, p=popularity / popularity.sum())
    scale = pd.Series(owner_segment[order_idx]).map({s: v[3] for s, v in SEGMENTS.items()}).to_numpy()
    quantity = 1 + rng.poisson(scale)
    list_price = products["list_price"].to_numpy()[product_idx]
    unit_price = np.round(list_price * rng.uniform(0.97, 1.03, size=k), 2)
    discount = rng.choice([0.0, 0.05, 0.10, 0.15], size=k, p=[0.6, 0.2, 0.15, 0.05])
    return pd.DataFrame(
        {
            "order_id": orders["order_id"].to_numpy()[order_idx],
            "line_number": line_number.astype(np.int64),
            "product_id": products["product_id"].to_numpy()[product_idx],
            "quantity": quantity.astype(np.int64),
            "unit_price": unit_price,
            "discount_pct": discount,
            "updated_at": orders["updated_at"].to_numpy()[order_idx],
        }
    )


def _interactions(
    rng: np.random.Generator, customers: pd.DataFrame, orders_per_customer: np.ndarray, start: date, end: date
):
    n = len(customers)
    counts = rng.poisson(1.5 + 0.6 * orders_per_customer)
    owner = np.repeat(np.arange(n), counts)
    signup = customers["signup_date"].to_numpy().astype("datetime64[D]")[owner]
    # A customer enters the CRM at signup; touchpoints in the export run from then, or from the start of
    # the export window, to the end of the data.
    first = np.maximum(signup, np.datetime64(start, "D"))
    span = (np.datetime64(end, "D") - first).astype(int) + 1
    when = first + (rng.random(len(owner)) * span).astype(int).astype("timedelta64[D]")
    stamps = _timestamps(when, rng)
    return pd.DataFrame(
        {
            "interaction_id": np.char.add(
                "I", np.char.zfill(np.arange(1, len(owner) + 1).astype(str), 9)
            ).astype(object),
            "customer_id": customers["customer_id"].to_numpy()[owner],
            "interaction_at": stamps,
            "interaction_type": _pick(rng, INTERACTION_TYPES, len(owner), [0.35, 0.2, 0.12, 0.08, 0.1, 0.15]),
            "outcome": _pick(rng, OUTCOMES, len(owner), [0.45, 0.4, 0.15]),
            "updated_at": stamps,
        }
    )


def _opportunities(rng: np.random.Generator, customers: pd.DataFrame, start: date, end: date):
    """The funnel as a CRM exports it: one row per opportunity and version, a new version each time the
    deal enters a stage or closes, with ``updated_at`` the moment of the change. An incremental load as of
    a date therefore sees each deal as it stood then (not its final outcome), and ``last_open_stage`` keeps,
    on a closed deal, the stage it was closed from."""
    n = len(customers)
    end_day = np.datetime64(end, "D")
    signup = np.maximum(
        customers["signup_date"].to_numpy().astype("datetime64[D]"), np.datetime64(start, "D")
    )
    years = ((end_day - signup).astype(int) + 1) / 365.0
    counts = rng.poisson(0.8 * years + 0.3)
    owner = np.repeat(np.arange(n), counts)
    k = len(owner)
    span = (end_day - signup[owner]).astype(int) + 1
    created = signup[owner] + (rng.random(k) * span).astype(int).astype("timedelta64[D]")
    # Walk each opportunity through the funnel until it drops out, wins, or runs into the end of the data.
    stage = np.zeros(k, dtype=int)  # index into FUNNEL_STAGES[:4]
    entered = np.full((k, len(STAGE_ADVANCE)), np.datetime64("NaT"), dtype="datetime64[D]")
    entered[:, 0] = created
    clock = created.copy()
    outcome = np.full(k, "open", dtype=object)
    parked = np.zeros(k, dtype=bool)  # still in a stage at the end of the data: moves no further
    for step, (advance, mean_days) in enumerate(zip(STAGE_ADVANCE, STAGE_DAYS, strict=True)):
        active = (outcome == "open") & ~parked
        stay = rng.exponential(mean_days, size=k).astype(int).astype("timedelta64[D]") + np.timedelta64(
            1, "D"
        )
        leaves_at = clock + stay
        still_open = active & (leaves_at > end_day)
        parked |= still_open
        decided = active & ~still_open
        moves_on = decided & (rng.random(k) < advance)
        lost = decided & ~moves_on
        outcome[lost] = "lost"
        clock[decided] = leaves_at[decided]
        if step < len(STAGE_ADVANCE) - 1:
            stage[moves_on] = step + 1
            entered[moves_on, step + 1] = leaves_at[moves_on]
        else:
            outcome[moves_on] = "won"
    closed = np.where(outcome == "open", np.datetime64("NaT"), clock).astype("datetime64[D]")
    deal = customers["segment"].map({s: v[4] for s, v in SEGMENTS.items()}).to_numpy()[owner]
    expected_close = created + (rng.normal(75, 20, size=k).clip(20, 200)).astype(int).astype("timedelta64[D]")
    deals = pd.DataFrame(
        {
            "opportunity_id": np.char.add("OP", np.char.zfill(np.arange(1, k + 1).astype(str), 8)).astype(
                object
            ),
            "customer_id": customers["customer_id"].to_numpy()[owner],
            "owner": customers["sales_owner"].to_numpy()[owner],
            "amount": np.round(deal * rng.lognormal(0, 0.6, size=k), 2),
            "currency": "USD",
            "created_date": created,
            "expected_close_date": expected_close,
        }
    )
    versions = []
    for j, stage_name in enumerate(FUNNEL_STAGES[:4]):
        reached = ~np.isnat(entered[:, j])
        versions.append(
            deals[reached].assign(
                stage=stage_name,
                last_open_stage=stage_name,
                closed_date=np.datetime64("NaT"),
                changed=entered[reached, j],
                # The rep's win probability: the stage's default, nudged by judgement in steps of 5%.
                probability=np.clip(
                    np.round((STAGE_PROBABILITY[stage_name] + rng.normal(0, 0.05, reached.sum())) * 20) / 20,
                    0.0,
                    1.0,
                ),
            )
        )
    is_closed = outcome != "open"
    final_stage = np.where(outcome == "won", "closed_won", "closed_lost")[is_closed]
    versions.append(
        deals[is_closed].assign(
            stage=final_stage,
            last_open_stage=np.asarray(FUNNEL_STAGES[:4], dtype=object)[stage[is_closed]],
            closed_date=closed[is_closed],
            changed=closed[is_closed],
            probability=np.where(final_stage == "closed_won", 1.0, 0.0),
        )
    )
    out = pd.concat(versions).sort_values(["opportunity_id", "changed"], kind="stable")
    out["updated_at"] = _timestamps(out["changed"].to_numpy().astype("datetime64[D]"), rng)
    return out.drop(columns="changed").reset_index(drop=True)


def _targets(
    rng: np.random.Generator, orders: pd.DataFrame, lines: pd.DataFrame, customers: pd.DataFrame, end: date
) -> pd.DataFrame:
    """Monthly targets per total, region and segment, set the way a sales plan is.

    Target = the same month last year x the growth of the trailing twelve months as known two months
    before, with planning noise (0.96 to 1.06). Months with no prior year get their own actual with
    planning noise. Targets run six months past the end of the data.
    """
    amount = lines["quantity"] * lines["unit_price"] * (1 - lines["discount_pct"])
    sales = (
        lines[["order_id"]]
        .assign(amount=amount)
        .merge(orders[["order_id", "customer_id", "order_date", "status"]])
    )
    sales = sales[sales["status"] == "completed"].merge(customers[["customer_id", "region", "segment"]])
    sales["period_start"] = sales["order_date"].to_numpy().astype("datetime64[M]").astype("datetime64[D]")
    frames = [sales.assign(level="total", member="all")]
    frames += [sales.assign(level=level, member=sales[level]) for level in ("region", "segment")]
    monthly = pd.concat(frames).groupby(["level", "member", "period_start"], as_index=False)["amount"].sum()
    last_actual = pd.Timestamp(end).to_period("M").to_timestamp()
    last_plan = last_actual + pd.DateOffset(months=6)
    periods = pd.date_range(monthly["period_start"].min(), last_plan, freq="MS")
    plans = []
    for (level, member), group in monthly.groupby(["level", "member"], sort=True):
        actual = group.set_index("period_start")["amount"].reindex(periods)
        actual[actual.index <= last_actual] = actual[actual.index <= last_actual].fillna(0.0)
        trailing = actual.rolling(12, min_periods=12).sum()
        growth = (trailing / trailing.shift(12)).shift(2).ffill()
        prior_year = actual.shift(12)
        noise = rng.uniform(0.96, 1.06, size=len(periods))
        target = np.where(prior_year.notna() & growth.notna(), prior_year * growth, actual) * noise
        plans.append(
            pd.DataFrame({"period_start": periods, "level": level, "member": member, "target_amount": target})
        )
    plan = pd.concat(plans, ignore_index=True)
    plan["target_amount"] = np.round(plan["target_amount"], 2)
    plan = plan[plan["target_amount"] > 0]
    return pd.DataFrame(
        {
            "period_start": plan["period_start"].to_numpy().astype("datetime64[D]"),
            "level": plan["level"].to_numpy(),
            "member": plan["member"].to_numpy(),
            "target_amount": plan["target_amount"].to_numpy(),
            "currency": "USD",
            "updated_at": np.datetime64(periods[0], "s") - np.timedelta64(1, "D"),
        }
    )


def _inject_defects(
    rng: np.random.Generator, tables: dict[str, pd.DataFrame], rate: float
) -> dict[str, list[str]]:
    """Damage a small, known share of rows. Returns the keys touched per defect kind."""
    customers, orders, lines = tables["customers"], tables["orders"], tables["order_lines"]
    defects: dict[str, list[str]] = {}

    def sample(frame: pd.DataFrame, share: float) -> np.ndarray:
        k = max(1, round(len(frame) * share))
        return np.sort(rng.choice(len(frame), size=min(k, len(frame)), replace=False))

    missing = sample(customers, 3 * rate)
    customers.loc[customers.index[missing], "email"] = None
    defects["missing_email"] = customers["customer_id"].iloc[missing].tolist()

    has_email = np.flatnonzero(customers["email"].notna().to_numpy())
    malformed = np.sort(rng.choice(has_email, size=max(1, round(len(customers) * rate)), replace=False))
    broken = customers["email"].iloc[malformed].str.replace("@", " at ", regex=False)
    customers.loc[customers.index[malformed], "email"] = broken.to_numpy()
    defects["malformed_email"] = customers["customer_id"].iloc[malformed].tolist()

    # Duplicate customers: the same person entered again under a new id (same name, email and phone).
    clean = np.setdiff1d(np.arange(len(customers)), np.concatenate([missing, malformed]))
    dup_src = np.sort(rng.choice(clean, size=max(1, round(len(customers) * rate)), replace=False))
    duplicates = customers.iloc[dup_src].copy()
    start_no = len(customers) + 1
    duplicates["customer_id"] = [f"C{n:07d}" for n in range(start_no, start_no + len(duplicates))]
    tables["customers"] = pd.concat([customers, duplicates], ignore_index=True)
    defects["duplicate_customer"] = duplicates["customer_id"].tolist()

    negative = sample(lines, rate / 2)
    lines.loc[lines.index[negative], "unit_price"] = -lines["unit_price"].iloc[negative].abs().to_numpy()
    defects["negative_amount"] = (
        lines["order_id"].iloc[negative] + "#" + lines["line_number"].iloc[negative].astype(str)
    ).tolist()

    future = sample(orders, rate / 4)
    orders.loc[orders.index[future], "order_date"] = np.datetime64("2031-01-15")
    defects["future_order_date"] = orders["order_id"].iloc[future].tolist()

    unknown = np.setdiff1d(sample(orders, rate / 4), future)
    orders.loc[orders.index[unknown], "customer_id"] = [f"X{n:07d}" for n in range(1, len(unknown) + 1)]
    defects["unknown_customer"] = orders["order_id"].iloc[unknown].tolist()

    # A win probability typed as a percentage (60 for 0.6), on the latest version of a deal (an earlier
    # version with it would be superseded by the next before any load that saw both).
    opportunities = tables["opportunities"]
    latest = np.flatnonzero(~opportunities["opportunity_id"].duplicated(keep="last").to_numpy())
    percent = np.sort(
        rng.choice(latest, size=min(max(1, round(len(latest) * rate / 2)), len(latest)), replace=False)
    )
    opportunities.loc[opportunities.index[percent], "probability"] = (
        opportunities["probability"].iloc[percent].to_numpy() * 100 + 5
    )
    defects["probability_as_percent"] = opportunities["opportunity_id"].iloc[percent].tolist()
    return defects


def generate_crm(
    n_customers: int = 2_000,
    seed: int = 42,
    start: date = DEFAULT_START,
    end: date = DEFAULT_END,
    defect_rate: float = 0.01,
) -> CrmDataset:
    """Generate a CRM data set. The same arguments always give the same data."""
    if n_customers < 10:
        raise ValueError("n_customers must be at least 10")
    if not start < end:
        raise ValueError("start must be before end")
    rng = np.random.default_rng(seed)
    # The business is older than its export: customers have signed up since two years before ``start``.
    customers = _customers(rng, n_customers, start - timedelta(days=730), end)
    products = _products(rng, start)
    orders, owner = _orders(rng, customers, start, end)
    lines = _order_lines(rng, orders, customers["segment"].to_numpy()[owner], products)
    orders_per_customer = np.bincount(owner, minlength=n_customers)
    tables = {
        "customers": customers,
        "products": products,
        "orders": orders,
        "order_lines": lines,
        "interactions": _interactions(rng, customers, orders_per_customer, start, end),
        "opportunities": _opportunities(rng, customers, start, end),
        "sales_targets": _targets(rng, orders, lines, customers, end),
    }
    defects = _inject_defects(rng, tables, defect_rate) if defect_rate > 0 else {}
    for spec in ENTITIES:
        tables[spec.name] = conform(tables[spec.name], spec)
    return CrmDataset(tables=tables, defects=defects, seed=seed, n_customers=n_customers)


# The columns holding generated ids, per entity: in a CRM written in parts, each part's ids get its number.
_ID_COLUMNS = {
    "customers": ("customer_id", "email"),
    "orders": ("order_id", "customer_id"),
    "order_lines": ("order_id",),
    "interactions": ("interaction_id", "customer_id"),
    "opportunities": ("opportunity_id", "customer_id"),
}


def _renumber(values: pd.Series, part: int) -> pd.Series:
    """``C0000042`` as ``C03-0000042`` in part 3: the leading letters, the part, then the rest."""
    text = values.astype(object)
    return text.str.replace(r"^([A-Za-z]*)", rf"\g<1>{part:02d}-", regex=True).where(text.notna(), None)


def write_crm_in_parts(
    folder: Path, n_customers: int, seed: int = 42, part_customers: int = 100_000
) -> dict[str, int]:
    """Generate a CRM too large to hold in memory as Parquet exports in parts: ``<entity>/part-NN.parquet``
    (a folder of files, as :class:`salespulse.sources.FileSource` reads daily drops), each part an
    independent population of at most ``part_customers`` with its own seed, so memory is bounded by one part.

    Ids carry the part's number, so they are unique across parts; products are the first part's (every
    part's lines use the same product ids); sales targets are the sum of the parts' targets, one file.
    Returns the rows written per entity.
    """
    folder = Path(folder)
    counts: dict[str, int] = {}
    targets: list[pd.DataFrame] = []
    parts = -(-n_customers // part_customers)
    sizes = [len(chunk) for chunk in np.array_split(np.arange(n_customers), parts)]
    for part, size in enumerate(sizes):
        crm = generate_crm(n_customers=size, seed=seed * 1_000 + part)
        for entity, frame in crm.tables.items():
            if entity == "sales_targets":
                targets.append(frame)
                continue
            if entity == "products" and part > 0:
                continue
            frame = frame.assign(**{c: _renumber(frame[c], part) for c in _ID_COLUMNS.get(entity, ())})
            (folder / entity).mkdir(parents=True, exist_ok=True)
            frame.to_parquet(folder / entity / f"part-{part:02d}.parquet", index=False)
            counts[entity] = counts.get(entity, 0) + len(frame)
        del crm
    keys = ["period_start", "level", "member", "currency"]
    summed = (
        pd.concat(targets)
        .groupby(keys, as_index=False)
        .agg(target_amount=("target_amount", "sum"), updated_at=("updated_at", "min"))
    )
    summed = conform(summed, get_entity("sales_targets"))
    summed.to_parquet(folder / "sales_targets.parquet", index=False)
    counts["sales_targets"] = len(summed)
    return counts


def conform(frame: pd.DataFrame, spec: Entity) -> pd.DataFrame:
    """Give a frame exactly the entity's columns, in order, with the model's types."""
    out = pd.DataFrame(index=frame.index)
    for column in spec.columns:
        values = (
            frame[column.name] if column.name in frame else pd.Series(None, index=frame.index, dtype=object)
        )
        if column.kind == "string":
            out[column.name] = values.astype("object").where(values.notna(), None)
        elif column.kind in ("date", "timestamp"):
            out[column.name] = pd.to_datetime(values).astype("datetime64[us]")
        elif column.kind == "int":
            out[column.name] = values.astype("int64")
        elif column.kind == "float":
            out[column.name] = values.astype("float64")
        else:
            out[column.name] = values.astype("bool")
    return out.reset_index(drop=True)
