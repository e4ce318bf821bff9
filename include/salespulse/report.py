"""The variance report a manager can open: one static HTML page per reported month, with its charts as PNG.

No server and nothing fetched: the page is plain HTML with inline CSS and ``<img>`` tags that point at the
PNG files beside it, so the folder can be opened from disk, zipped, or mailed. Reports live under
``<data dir>/reports/<YYYY-MM>/`` (a re-run replaces its month's folder) with an index of every month at
``<data dir>/reports/index.html``.

The report step (:mod:`salespulse.steps.report`) reads what the page shows into a :class:`ReportData`, as
of the report's date (so an older month re-rendered later shows what was known then, not the newest
segments); :func:`render_report` draws it and writes the files. Charts are drawn with matplotlib's
object API (no pyplot state, safe in worker processes).
"""

from __future__ import annotations

import html
import shutil
import warnings
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps, font_manager
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, DateFormatter, MonthLocator
from matplotlib.figure import Figure

from salespulse.variance import bias_by_level

LEVEL_ORDER = ("total", "region", "segment", "category", "sales_owner")
HISTORY_MONTHS = 24
MAX_MEMBERS_PER_CHART = 9
LARGEST_VARIANCES = 15
LARGEST_BIASES = 8
# Fonts with Chinese, Japanese and Korean glyphs, used when installed so such names draw in the charts.
CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei")
COLORS = {"actual": "#1f3b73", "forecast": "#d9822b", "flag": "#c23b22", "ok": "#5b8c5a", "band": "#f2c18d"}


@dataclass
class ReportData:
    as_of: date
    period: date
    variance: pd.DataFrame  # every fact of months up to the reported one
    actuals: pd.DataFrame  # series_id, level, member, period_start, revenue
    forecast: pd.DataFrame  # the latest snapshot made on or before as_of
    segment_mix: pd.DataFrame  # snapshot_date, rfm_segment, customers
    migration: pd.DataFrame  # from_group, to_group, customers (RFM segment, last two snapshots)
    data_quality: pd.DataFrame  # entity, validation_date (load as-of date), quality_score, rows_quarantined
    drivers: pd.DataFrame  # the report's price/volume/mix rows
    churn_warnings: int
    quarterly: pd.DataFrame  # the report month's quarterly review rows (salespulse.quarterly)


def _font_families() -> list[str]:
    installed = {f.name for f in font_manager.fontManager.ttflist}
    return ["DejaVu Sans", *[name for name in CJK_FONTS if name in installed]]


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _save(fig: Figure, path: Path) -> Path:
    with warnings.catch_warnings():
        # A name in a script no installed font covers draws as boxes; the HTML tables carry it in full.
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.savefig(path, format="png")
    return path


def _money(value: float | np.floating | None) -> str:
    if value is None or pd.isna(value):
        return "n/a"
    return f"{value:,.0f}"


def _pct(value: float | None) -> str:
    if value is None or pd.isna(value):
        return "n/a"
    return f"{value:+.1%}"


def _month_axis(ax: object) -> None:
    """Half-yearly month labels, upright: readable in small panels and cheap to lay out."""
    ax.xaxis.set_major_locator(MonthLocator(bymonth=(1, 7)))  # type: ignore[attr-defined]
    ax.xaxis.set_major_formatter(DateFormatter("%Y-%m"))  # type: ignore[attr-defined]
    ax.tick_params(axis="x", labelsize=7)  # type: ignore[attr-defined]


def chart_forecast_level(data: ReportData, level: str, lead: int, path: Path) -> Path | None:
    """Actual revenue per member of one level, with the forecast made ``lead`` months ahead of each
    reported month (95% interval as error bars) and the latest snapshot's forecast with 80/95% bands."""
    actuals = data.actuals[data.actuals["level"] == level].copy()
    if actuals.empty:
        return None
    actuals["period_start"] = pd.to_datetime(actuals["period_start"])
    size = actuals.groupby("member")["revenue"].sum().sort_values(ascending=False)
    members = list(size.index[:MAX_MEMBERS_PER_CHART])
    cols = min(3, len(members))
    rows = int(np.ceil(len(members) / cols))
    fig = _figure(max(4.2 * cols, 9.0), (3.6 if cols == 1 else 2.8) * rows + 0.7)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    past = data.variance[(data.variance["level"] == level) & (data.variance["horizon"] == lead)].copy()
    past["period_start"] = pd.to_datetime(past["period_start"])
    ahead = data.forecast[data.forecast["level"] == level].copy()
    ahead["period_start"] = pd.to_datetime(ahead["period_start"])
    for ax, member in zip(axes, members, strict=False):
        own = actuals[actuals["member"] == member].sort_values("period_start")
        ax.plot(own["period_start"], own["revenue"], color=COLORS["actual"], lw=1.6, label="actual")
        made = past[past["member"] == member].sort_values("period_start")
        if len(made):
            ax.errorbar(
                made["period_start"],
                made["forecast"],
                yerr=[made["forecast"] - made["lo95"], made["hi95"] - made["forecast"]],
                fmt="o",
                ms=4,
                color=COLORS["forecast"],
                ecolor=COLORS["forecast"],
                capsize=2,
                label=f"forecast made {lead} mo. ahead (95%)",
            )
            flagged = made[made["flagged"].astype(bool)]
            ax.scatter(flagged["period_start"], flagged["actual"], s=40, facecolors="none",
                       edgecolors=COLORS["flag"], lw=1.5, zorder=5, label="flagged")  # fmt: skip
        fwd = ahead[ahead["member"] == member].sort_values("period_start")
        if len(fwd):
            ax.fill_between(fwd["period_start"], fwd["lo95"], fwd["hi95"], color=COLORS["band"], alpha=0.35,
                            lw=0, label="latest forecast 95%")  # fmt: skip
            ax.fill_between(fwd["period_start"], fwd["lo80"], fwd["hi80"], color=COLORS["band"], alpha=0.7,
                            lw=0, label="latest forecast 80%")  # fmt: skip
            ax.plot(fwd["period_start"], fwd["forecast"], color=COLORS["forecast"], ls="--", lw=1.4,
                    label="latest forecast")  # fmt: skip
        ax.axvline(pd.Timestamp(data.period), color="#888888", lw=0.8, ls=":")
        ax.set_title(str(member), fontsize=9)
        ax.tick_params(labelsize=7)
        ax.yaxis.set_major_formatter(lambda v, _: f"{v / 1000:,.0f}k")
        ax.set_ylim(bottom=0)
        _month_axis(ax)
    for ax in axes[len(members) :]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    ncols = min(6, len(labels))
    fig.legend(handles, labels, loc="outside lower center", ncols=ncols, fontsize=7, frameon=False)
    more = f" (largest {len(members)} of {len(size)})" if len(size) > len(members) else ""
    fig.suptitle(f"Revenue by {level.replace('_', ' ')}: actual vs forecast{more}", fontsize=11)
    return _save(fig, path)


def chart_largest_variances(facts: pd.DataFrame, lead: int, path: Path) -> Path | None:
    """The largest absolute variances against forecast of the month, red where a flag was raised."""
    rows = facts[(facts["horizon"] == lead)].copy()
    if rows.empty:
        return None
    rows = rows.reindex(rows["variance_abs"].abs().sort_values(ascending=False).index).head(LARGEST_VARIANCES)
    rows = rows.iloc[::-1]
    fig = _figure(8, 0.32 * len(rows) + 1.4)
    ax = fig.add_subplot()
    colors = [COLORS["flag"] if f else COLORS["ok"] for f in rows["flagged"].astype(bool)]
    labels = [f"{s}  ({_pct(p)})" for s, p in zip(rows["series_id"], rows["variance_pct"], strict=True)]
    ax.barh(labels, rows["variance_abs"], color=colors)
    ax.axvline(0, color="#333333", lw=0.8)
    ax.tick_params(labelsize=7)
    ax.xaxis.set_major_formatter(lambda v, _: f"{v / 1000:+,.0f}k")
    ax.set_xlabel("actual - forecast (red: flagged)", fontsize=8)
    ax.set_title(f"Largest variances against the forecast made {lead} month(s) ahead", fontsize=10)
    return _save(fig, path)


def chart_segment_mix(mix: pd.DataFrame, path: Path) -> Path | None:
    """Customers per RFM segment at each segment snapshot (stacked)."""
    if mix.empty:
        return None
    table = mix.pivot_table(index="snapshot_date", columns="rfm_segment", values="customers", aggfunc="sum")
    table = table.fillna(0).tail(12)
    table = table[table.sum().sort_values(ascending=False).index]
    fig = _figure(8, 4)
    ax = fig.add_subplot()
    bottom = np.zeros(len(table))
    labels = [str(d)[:10] for d in table.index]
    palette = [colormaps["tab20"](i) for i in range(20)]
    for i, segment in enumerate(table.columns):
        ax.bar(labels, table[segment], bottom=bottom, label=str(segment), color=palette[i % len(palette)])
        bottom += table[segment].to_numpy()
    ax.set_ylabel("customers", fontsize=8)
    ax.tick_params(labelsize=7)
    handles, names = ax.get_legend_handles_labels()  # top of the stack first, as drawn
    ax.legend(
        handles[::-1], names[::-1], fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False
    )
    ax.set_title("Customers by RFM segment per snapshot", fontsize=10)
    return _save(fig, path)


def chart_migration(migration: pd.DataFrame, path: Path) -> Path | None:
    """Where the customers of each RFM segment at the previous snapshot are now (counts; rows = from)."""
    if migration.empty:
        return None
    table = migration.pivot_table(
        index="from_group", columns="to_group", values="customers", aggfunc="sum", fill_value=0
    )
    order = list(table.sum(axis=1).sort_values(ascending=False).index)
    columns = [g for g in order if g in table.columns] + [c for c in table.columns if c not in order]
    table = table.reindex(index=order, columns=columns, fill_value=0)
    fig = _figure(1.0 + 0.7 * len(columns), 1.2 + 0.45 * len(order))
    ax = fig.add_subplot()
    share = table.div(table.sum(axis=1).replace(0, np.nan), axis=0).fillna(0).to_numpy()
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for i in range(table.shape[0]):
        for j in range(table.shape[1]):
            value = int(table.iat[i, j])
            if value:
                ax.text(j, i, f"{value:,}", ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > 0.55 else "#222222")  # fmt: skip
    ax.set_xticks(range(len(columns)), [str(c) for c in columns], rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(order)), [str(r) for r in order], fontsize=7)
    ax.set_xlabel("segment now", fontsize=8)
    ax.set_ylabel("segment at the previous snapshot", fontsize=8)
    ax.set_title("Segment migration between the last two snapshots (customers)", fontsize=10)
    return _save(fig, path)


def chart_data_quality(quality: pd.DataFrame, path: Path) -> Path | None:
    """Share of expectations passed per entity per day, and rows quarantined per day."""
    if quality.empty:
        return None
    quality = quality.assign(validation_date=pd.to_datetime(quality["validation_date"]))
    fig = _figure(8, 5)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    for entity, part in quality.groupby("entity"):
        top.plot(part["validation_date"], part["quality_score"], marker="o", ms=3, lw=1.2, label=str(entity))
    top.set_ylim(0, 1.05)
    top.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    top.set_ylabel("expectations passed", fontsize=8)
    top.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    top.set_title("Data quality per load (as-of date)", fontsize=10)
    daily = quality.groupby("validation_date")["rows_quarantined"].sum()
    bottom.bar(daily.index, daily.to_numpy(), width=0.8, color=COLORS["flag"])
    bottom.set_ylabel("rows quarantined", fontsize=8)
    locator = AutoDateLocator(maxticks=8)
    bottom.xaxis.set_major_locator(locator)
    bottom.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    for ax in (top, bottom):
        ax.tick_params(labelsize=7)
    return _save(fig, path)


def chart_revenue_bridge(drivers: pd.DataFrame, path: Path) -> Path | None:
    """Waterfall of the total's month-over-month change: baseline, volume, mix, price, current."""
    total = drivers[drivers["series_id"] == "total:all"]
    if total.empty:
        return None
    d = total.iloc[0]
    steps = [
        (f"{str(d['baseline_start'])[:7]}", float(d["baseline_revenue"]), True),
        ("volume", float(d["volume_effect"]), False),
        ("mix", float(d["mix_effect"]), False),
        ("price", float(d["price_effect"]), False),
        (f"{str(d['period_start'])[:7]}", float(d["current_revenue"]), True),
    ]
    fig = _figure(7, 3.6)
    ax = fig.add_subplot()
    running = 0.0
    for i, (_, value, is_total) in enumerate(steps):
        if is_total:
            ax.bar(i, value, color=COLORS["actual"])
            running = value
            top = value
        else:
            ax.bar(i, value, bottom=running, color=COLORS["ok"] if value >= 0 else COLORS["flag"])
            running += value
            top = max(running, running - value)
        ax.text(i, top, f"{value / 1000:+,.0f}k" if not is_total else f"{value / 1000:,.0f}k",
                ha="center", va="bottom", fontsize=7)  # fmt: skip
    ax.set_xticks(range(len(steps)), [s[0] for s in steps], fontsize=8)
    ax.yaxis.set_major_formatter(lambda v, _: f"{v / 1000:,.0f}k")
    ax.tick_params(labelsize=7)
    ax.set_title("Why total revenue moved: price / volume / mix", fontsize=10)
    return _save(fig, path)


def _table(frame: pd.DataFrame, formats: dict[str, str], flag_column: str | None = None) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for label in formats.values())
    body = []
    for row in frame.to_dict(orient="records"):
        css = ' class="flag"' if flag_column and bool(row.get(flag_column)) else ""
        cells = []
        for column in formats:
            value = row.get(column)
            if column == "wape":
                text = "n/a" if pd.isna(value) else f"{value:.1%}"
            elif column.endswith("_pct") or column == "bias":
                text = _pct(value)
            elif column in ("mase", "tracking_signal", "tracking_z"):
                text = "n/a" if value is None or pd.isna(value) else f"{value:.2f}"
            elif isinstance(value, float | np.floating):
                text = _money(value)
            elif isinstance(value, bool | np.bool_):
                text = "yes" if value else "no"
            else:
                text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append(f"<tr{css}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# The columns every member table starts with: actual vs forecast vs target.
COMPARISON_TABLE = {
    "member": "member",
    "actual": "actual",
    "forecast": "forecast",
    "variance_pct": "vs forecast",
    "target": "target",
    "target_variance_pct": "vs target",
}

VARIANCE_TABLE = {
    **COMPARISON_TABLE,
    "within_interval_95": "in 95%",
    "bias": "bias (window)",
    "wape": "WAPE (window)",
    "mase": "MASE (window)",
    "tracking_signal": "tracking signal",
    "flag_reasons": "flags",
}

STYLE = """
body{font-family:-apple-system,'Segoe UI','Noto Sans','Noto Sans CJK SC','PingFang SC','Microsoft YaHei',
sans-serif;margin:2rem auto;max-width:1150px;color:#222;padding:0 1rem}
h1{margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
.sub{color:#666}.kpis{display:flex;gap:1rem;flex-wrap:wrap;margin:1.2rem 0}
.kpi{border:1px solid #ddd;border-radius:6px;padding:.6rem 1rem;min-width:9rem}
.kpi b{display:block;font-size:1.3rem}.kpi span{color:#666;font-size:.85rem}
table{border-collapse:collapse;font-size:.82rem;margin:.6rem 0 1rem}
th,td{border-bottom:1px solid #eee;padding:.25rem .5rem;text-align:right}
th:first-child,td:first-child,td:last-child{text-align:left}tr.flag td{background:#fbeae7}
img{max-width:100%;border:1px solid #eee;margin:.4rem 0}
.note{color:#666;font-size:.85rem}
"""


def charted_levels(actuals: pd.DataFrame) -> list[str]:
    """The total and every level with more than one member: a level with one member is the total again
    (the forecast step skips it too)."""
    members = actuals.groupby("level")["member"].nunique()
    return [level for level in LEVEL_ORDER if level == "total" or members.get(level, 0) > 1]


def render_report(data: ReportData, out_dir: Path, run_id: str, lead: int = 1) -> Path:
    """Draw the charts and write ``index.html`` into ``out_dir`` (replaced if it exists); returns the page."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    from matplotlib import rc_context

    facts = data.variance[pd.to_datetime(data.variance["period_start"]) == pd.Timestamp(data.period)]
    charts: dict[str, Path | None] = {}
    with rc_context({"font.family": _font_families()}):
        for level in charted_levels(data.actuals):
            name = f"forecast_{level}"
            charts[name] = chart_forecast_level(data, level, lead, out_dir / f"{name}.png")
        charts["largest_variances"] = chart_largest_variances(facts, lead, out_dir / "largest_variances.png")
        charts["revenue_bridge"] = chart_revenue_bridge(data.drivers, out_dir / "revenue_bridge.png")
        charts["segment_mix"] = chart_segment_mix(data.segment_mix, out_dir / "segment_mix.png")
        charts["segment_migration"] = chart_migration(data.migration, out_dir / "segment_migration.png")
        charts["data_quality"] = chart_data_quality(data.data_quality, out_dir / "data_quality.png")
    page = out_dir / "index.html"
    page.write_text(_page(data, facts, charts, run_id, lead), encoding="utf-8")
    (out_dir / "quarterly.html").write_text(_quarterly_page(data, run_id), encoding="utf-8")
    write_index(out_dir.parent)
    return page


def _img(charts: dict[str, Path | None], key: str, alt: str) -> str:
    path = charts.get(key)
    if path is None:
        return f'<p class="note">No data yet for: {html.escape(alt)}.</p>'
    return f'<img src="{html.escape(path.name)}" alt="{html.escape(alt)}">'


QUARTER_TABLE = {
    **COMPARISON_TABLE,
    "forecast_quarter": "forecast, whole quarter",
    "previous_actual": "quarter before, same months",
    "orders_effect": "from orders",
    "order_value_effect": "from revenue per order",
}


def _kpis(kpis: list[tuple[str, str]]) -> list[str]:
    return [
        "<div class='kpis'>",
        *(f"<div class='kpi'><b>{html.escape(v)}</b><span>{html.escape(k)}</span></div>" for k, v in kpis),
        "</div>",
    ]


def _quarterly_page(data: ReportData, run_id: str) -> str:
    """The quarterly review page: each reviewed quarter's total in figures, then every level's members."""
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>SalesPulse quarterly review {data.period:%Y-%m}</title><style>{STYLE}</style></head><body>",
        "<p><a href='index.html'>&larr; monthly report</a></p>",
    ]
    review = data.quarterly
    if review.empty:
        parts += [
            f"<h1>Quarterly review: {data.period:%Y-%m}</h1>",
            "<p class='note'>No forecast was made before these quarters began, so there is nothing to review "
            "yet.</p></body></html>",
        ]
        return "\n".join(parts)
    order = {level: i for i, level in enumerate(LEVEL_ORDER)}
    for quarter, rows in sorted(review.groupby("quarter"), reverse=True):
        first = rows.iloc[0]
        status = "closed" if first["status"] == "closed" else f"to date, {first['months_closed']} of 3 months"
        parts.append(f"<h1>Quarterly review: {html.escape(str(quarter))} ({status})</h1>")
        parts.append(
            f"<p class='sub'>As of {data.as_of.isoformat()} &middot; run {html.escape(run_id)} &middot; "
            f"forecast judged: the snapshot of {pd.Timestamp(first['forecast_as_of']):%Y-%m-%d}, made before "
            "the quarter began. Variance = actual &minus; forecast. The change against the same months of "
            "the quarter before splits into more or fewer orders and a higher or lower revenue per order.</p>"
        )
        total = rows[rows["series_id"] == "total:all"]
        if len(total):
            t = total.iloc[0]
            parts += _kpis(
                [
                    ("actual", _money(t["actual"])),
                    ("forecast before the quarter", _money(t["forecast"])),
                    ("vs forecast", _pct(t["variance_pct"])),
                    ("target", _money(t["target"])),
                    ("vs target", _pct(t["target_variance_pct"])),
                    ("change from orders", _money(t["orders_effect"])),
                    ("change from revenue per order", _money(t["order_value_effect"])),
                ]
            )
        levels = sorted(rows["level"].unique(), key=lambda level: (order.get(level, len(order)), level))
        for level in levels:
            members = rows[rows["level"] == level].sort_values("actual", ascending=False)
            parts.append(f"<h3>{html.escape(level.replace('_', ' ').capitalize())}</h3>")
            parts.append(_table(members, QUARTER_TABLE))
    parts.append(
        "<p class='note'>BI tools read the same numbers from reporting.quarterly_review.</p></body></html>"
    )
    return "\n".join(parts)


BIAS_TABLE = {
    "level": "level",
    "horizon": "months ahead",
    "months": "months",
    "comparisons": "comparisons",
    "bias": "bias",
    "wape": "wape",
    "coverage_80": "in 80%",
    "coverage_95": "in 95%",
}


def _bias_section(data: ReportData, lead: int) -> list[str]:
    """Bias per level and lead over the last six reported months, stated plainly: which way and how far."""
    table = bias_by_level(data.variance, data.period)
    if table.empty:
        return []
    order = {level: i for i, level in enumerate(LEVEL_ORDER)}
    table = table.sort_values(["horizon", "level"], key=lambda c: c.map(order) if c.name == "level" else c)
    at_lead = table[(table["horizon"] == lead) & table["bias"].notna()]
    total = at_lead[at_lead["level"] == "total"]
    sentences = [
        f"{row['level'].replace('_', ' ')}: actuals ran {_direction(row['bias'])}"
        for row in at_lead.to_dict(orient="records")
        if total.empty or row["level"] == "total" or abs(row["bias"] - total["bias"].iloc[0]) > 0.0005
    ]
    if len(total) and len(sentences) == 1:
        every = _direction(total["bias"].iloc[0])
        sentences = [f"every level: actuals ran {every} (the levels add up to the total)"]
    members = bias_by_level(data.variance, data.period, by=("level", "member"))
    kept = (members["horizon"] == lead) & (members["level"] != "total") & (members["months"] >= 2)
    members = members[kept & members["bias"].notna()]
    members = members.loc[members["bias"].abs().sort_values(ascending=False).index].head(LARGEST_BIASES)
    parts = [
        "<h2>Forecast bias by level</h2>",
        f"<p>Over the last {int(table['months'].max())} reported month(s), {lead} month(s) ahead: "
        + html.escape("; ".join(sentences) or "no comparisons yet")
        + ". Positive bias means forecasts were too low. Intervals are honest when about 80% and 95% of "
        "actuals fall inside them.</p>",
        _table(_coverage_as_percent(table), BIAS_TABLE),
    ]
    if len(members):
        parts.append(f"<h3>The members furthest off, {lead} month(s) ahead (two months or more)</h3>")
        columns = {"level": "level", "member": "member", **BIAS_TABLE}
        parts.append(_table(_coverage_as_percent(members), columns))
    return parts


def _coverage_as_percent(table: pd.DataFrame) -> pd.DataFrame:
    return table.assign(**{c: table[c].map(lambda v: f"{v:.0%}") for c in ("coverage_80", "coverage_95")})


def _direction(bias: float) -> str:
    return f"{abs(bias):.1%} {'above' if bias > 0 else 'below'} the forecast"


def _page(
    data: ReportData, facts: pd.DataFrame, charts: dict[str, Path | None], run_id: str, lead: int
) -> str:
    month = f"{data.period:%Y-%m}"
    at_lead = facts[facts["horizon"] == lead]
    total = at_lead[at_lead["series_id"] == "total:all"]
    t = total.iloc[0] if len(total) else None
    flagged = facts[facts["flagged"].astype(bool)]
    forecast_flags, target_flags = int(facts["flag_forecast"].sum()), int(facts["flag_target"].sum())
    kpis = [
        ("actual revenue", _money(t["actual"]) if t is not None else "n/a"),
        (f"forecast ({lead} mo. ahead)", _money(t["forecast"]) if t is not None else "n/a"),
        ("vs forecast", _pct(t["variance_pct"]) if t is not None else "n/a"),
        ("target", _money(t["target"]) if t is not None else "n/a"),
        ("vs target", _pct(t["target_variance_pct"]) if t is not None else "n/a"),
        ("comparisons flagged", f"{len(flagged)} of {len(facts)}"),
        ("off forecast / off target", f"{forecast_flags} / {target_flags}"),
        ("churn warnings", f"{data.churn_warnings}"),
    ]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>SalesPulse variance report {month}</title><style>{STYLE}</style></head><body>",
        f"<h1>Sales variance report: {month}</h1>",
        f"<p class='sub'>As of {data.as_of.isoformat()} &middot; run {html.escape(run_id)} &middot; "
        f"generated {datetime.now():%Y-%m-%d %H:%M}. Variance = actual &minus; forecast: positive means "
        "sales beat the forecast.</p>",
        *_kpis(kpis),
        "<p><a href='quarterly.html'>Quarterly review</a>: the quarter to date and the last closed one, "
        "against the forecast made before each began and the targets.</p>",
    ]
    if facts.empty:
        parts.append(
            "<p class='note'>No forecast was made for this month before it began, so there is nothing to "
            "compare yet. Forecast snapshots start the comparisons from the next month on.</p>"
        )
    parts += ["<h2>Largest variances</h2>", _img(charts, "largest_variances", "largest variances")]
    if len(flagged):
        ordered = flagged.reindex(flagged["variance_abs"].abs().sort_values(ascending=False).index)
        parts.append(
            _table(
                ordered.assign(label=ordered["series_id"] + " h=" + ordered["horizon"].astype(str)),
                {
                    "label": "series",
                    "actual": "actual",
                    "forecast": "forecast",
                    "variance_pct": "vs forecast",
                    "lo95": "95% low",
                    "hi95": "95% high",
                    "target_variance_pct": "vs target",
                    "tracking_z": "lean (sigma)",
                    "flag_reasons": "why flagged",
                },
            )
        )
    parts.append(
        "<p class='note'>A comparison is flagged when the actual fell outside the 95% interval the forecast "
        "stated at that lead, or the last months' errors lean one way by more than those intervals allow "
        "(lean beyond the limit in sigma), and the miss is at least "
        f"{_money(facts['materiality_threshold'].max()) if len(facts) else 'n/a'} (the materiality limit); "
        "or the actual missed its target by more than the target limit. An honest forecast is outside its "
        "95% interval about one month in twenty.</p>"
    )
    parts += _bias_section(data, lead)
    parts += ["<h2>Actual vs forecast</h2>"]
    for level in LEVEL_ORDER:
        rows = at_lead[at_lead["level"] == level].sort_values("actual", ascending=False)
        if charts.get(f"forecast_{level}") is None and rows.empty:
            continue
        parts.append(f"<h3>{html.escape(level.replace('_', ' ').capitalize())}</h3>")
        parts.append(_img(charts, f"forecast_{level}", f"actual vs forecast by {level}"))
        if len(rows):
            parts.append(_table(rows, VARIANCE_TABLE, flag_column="flagged"))
    parts += [
        "<h2>Why revenue moved</h2>",
        _img(charts, "revenue_bridge", "price / volume / mix of total revenue"),
    ]
    if len(data.drivers):
        parts.append(
            _table(
                data.drivers.assign(
                    change=data.drivers["current_revenue"] - data.drivers["baseline_revenue"]
                ),
                {
                    "series_id": "series",
                    "baseline_revenue": "previous month",
                    "current_revenue": "this month",
                    "change": "change",
                    "volume_effect": "volume",
                    "mix_effect": "mix",
                    "price_effect": "price",
                },
            )
        )
    parts += [
        "<h2>Customer segments</h2>",
        _img(charts, "segment_mix", "segment mix"),
        _img(charts, "segment_migration", "segment migration"),
        "<h2>Data quality</h2>",
        _img(charts, "data_quality", "data quality trend"),
        "<p class='note'>BI tools read the same numbers from the reporting schema: reporting.variance, "
        "reporting.variance_flags, reporting.forecast_accuracy, reporting.revenue_drivers, "
        "reporting.segment_summary, reporting.segment_migration, reporting.data_quality_daily.</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_index(reports_dir: Path) -> Path:
    """``reports/index.html``: a link to every month's report, newest first."""
    months = sorted((p.name for p in reports_dir.iterdir() if (p / "index.html").exists()), reverse=True)
    links = "".join(f"<li><a href='{html.escape(m)}/index.html'>{html.escape(m)}</a></li>" for m in months)
    index = reports_dir / "index.html"
    index.write_text(
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>SalesPulse variance reports</title><style>{STYLE}</style></head><body>"
        f"<h1>SalesPulse variance reports</h1><ul>{links}</ul></body></html>",
        encoding="utf-8",
    )
    return index
