"""Bad input, kind by kind, through the file source in each format it reads (CSV, gzipped CSV, Parquet) and
through a mapping file over the CSV:
each kind either loads as it should or is quarantined by a named rule with its original text kept, and
every batch keeps ``rows_read = loaded + quarantined + duplicates``. Nothing is silently wrong.
The session's closing line says how many kinds were tried and how each ended (silent and unclear: 0).

Each kind changes one cell (or adds one row) of a small clean CRM; the parents of the entity under test are
loaded first, unchanged, so reference checks see them.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import yaml

from salespulse.generator import CrmDataset, generate_crm
from salespulse.ingest import LoadResult, ingest_from_source
from salespulse.mapping import MappingError
from salespulse.model import get_entity, load_order
from salespulse.quality import DataQualityError
from salespulse.schema import create_schema
from salespulse.sources import FileSource, MappedSource, UnreadableFile
from salespulse.warehouse import get_engine, read_frame

AS_OF = date(2026, 11, 1)
OUTCOMES: Counter[str] = Counter()


@dataclass(frozen=True)
class Kind:
    name: str
    entity: str
    change: Callable[[pd.DataFrame], pd.DataFrame]
    rule: str | None = None  # the rule that must quarantine the changed row; None: it must load
    check: Callable[[pd.DataFrame, pd.DataFrame], None] | None = None  # (core, quarantine) when it loads
    warn: bool = False  # the rule is a warning: the row loads and the failed check is recorded
    stops: bool = False  # a batch-level rule: the whole load stops with a DataQualityError naming it
    formats: tuple[str, ...] = ("csv", "csv.gz", "parquet", "mapping")

    def __str__(self) -> str:
        return self.name


def _cell(column: str, value: object, row: int = 0) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.astype({column: object})
        frame.loc[frame.index[row], column] = value
        return frame

    return change


def _newest_version_unreadable(frame: pd.DataFrame) -> pd.DataFrame:
    newer = frame.iloc[[0]].astype({"updated_at": object, "customer_name": object})
    newer.loc[:, ["updated_at", "customer_name"]] = ["last tuesday", "renamed"]
    return pd.concat([frame.astype({"updated_at": object}), newer], ignore_index=True)


def _updated_at_is(expected: str) -> Callable[[pd.DataFrame, pd.DataFrame], None]:
    def check(core: pd.DataFrame, quarantine: pd.DataFrame) -> None:
        assert str(core.sort_values("customer_id")["updated_at"].iloc[0]) == expected

    return check


def _padded_copy(frame: pd.DataFrame) -> pd.DataFrame:
    """A later version of the first customer whose key arrives with spaces around it."""
    copy = frame.iloc[[0]].astype({"customer_id": object})
    copy["customer_id"] = f"  {copy['customer_id'].iloc[0]} "
    copy["updated_at"] = pd.Timestamp(copy["updated_at"].iloc[0]) + pd.Timedelta(hours=1)
    return pd.concat([frame, copy], ignore_index=True)


def _one_customer_for_a_padded_key(core: pd.DataFrame, quarantine: pd.DataFrame) -> None:
    assert core["customer_id"].str.strip().eq(core["customer_id"]).all()
    assert core["customer_id"].is_unique and len(core) == 8


KINDS = [
    Kind("time with Z", "customers", _cell("updated_at", "2026-10-01T08:00:00Z"), None,
         _updated_at_is("2026-10-01 08:00:00")),
    Kind("time with an offset", "customers", _cell("updated_at", "2026-10-01T10:00:00+02:00"), None,
         _updated_at_is("2026-10-01 08:00:00")),
    Kind("day-first date", "customers", _cell("signup_date", "03.04.2026"), "type_signup_date"),
    Kind("US date", "customers", _cell("signup_date", "04/03/2026"), "type_signup_date"),
    Kind("words for a date", "customers", _cell("signup_date", "last tuesday"), "type_signup_date"),
    Kind("newest version unreadable", "customers", _newest_version_unreadable, "type_updated_at"),
    Kind("padded key", "customers", _padded_copy, None, _one_customer_for_a_padded_key),
    Kind("key of spaces", "customers", _cell("customer_id", "   "), "customer_id_present"),
    Kind("inf price", "products", _cell("list_price", "inf"), "finite_list_price"),
    Kind("Infinity price", "products", _cell("list_price", "Infinity"), "finite_list_price"),
    Kind("-inf price", "products", _cell("list_price", "-inf"), "finite_list_price"),
    Kind("1e308 price", "products", _cell("list_price", "1e308"), "range_list_price"),
    Kind("text price", "products", _cell("list_price", "twelve"), "type_list_price"),
    Kind("23-digit quantity", "order_lines", _cell("quantity", "12345678901234567890123"), "range_quantity"),
    Kind("fractional quantity", "order_lines", _cell("quantity", "2.5"), "type_quantity"),
    Kind("31 February", "customers", _cell("signup_date", "2026-02-31"), "type_signup_date"),
    Kind("quantity with a unit", "order_lines", _cell("quantity", "3 pcs"), "type_quantity"),
    Kind("price with a currency sign", "order_lines", _cell("unit_price", "$12.50"), "type_unit_price"),
    Kind("decimal comma", "order_lines", _cell("unit_price", "12,50"), "type_unit_price"),
    Kind("NUL character in a name", "customers", _cell("customer_name", "Nul\x00Name"), "type_customer_name"),
]  # fmt: skip

# The quality rules, one kind each: the value is the same text in every format, so CSV and Parquet.
RULES = ("csv", "parquet")


def _rule(
    name: str, entity: str, column: str, value: object, rule: str, warn: bool = False, stops: bool = False
) -> Kind:
    return Kind(name, entity, _cell(column, value), rule, warn=warn, stops=stops, formats=RULES)


def _name_kept(name: str) -> Callable[[pd.DataFrame, pd.DataFrame], None]:
    def check(core: pd.DataFrame, quarantine: pd.DataFrame) -> None:
        assert name in set(core["customer_name"]), core["customer_name"].tolist()

    return check


def _later_version(frame: pd.DataFrame) -> pd.DataFrame:
    later = frame.iloc[[0]].astype({"customer_name": object})
    later["customer_name"] = "the later name"
    later["updated_at"] = pd.Timestamp(later["updated_at"].iloc[0]) + pd.Timedelta(days=1)
    return pd.concat([frame, later], ignore_index=True)


def _exact_copy(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([frame, frame.iloc[[0]]], ignore_index=True)


def _unique_names(core: pd.DataFrame, quarantine: pd.DataFrame) -> None:
    assert core["customer_id"].is_unique and len(core) == 8


RULE_KINDS = [
    _rule("no customer name", "customers", "customer_name", None, "customer_name_present"),
    _rule("country as a name", "customers", "country_code", "Germany", "country_code_iso_alpha2"),
    _rule("country in lower case", "customers", "country_code", "de", "country_code_iso_alpha2"),
    _rule("country padded", "customers", "country_code", " DE", "country_code_iso_alpha2"),
    _rule("unassigned country", "customers", "country_code", "XX", "country_code_assigned", warn=True),
    _rule("no region", "customers", "region", None, "region_present"),
    _rule("signup after the as-of date", "customers", "signup_date", "2026-12-24",
          "signup_date_not_in_future"),
    _rule("no signup date", "customers", "signup_date", None, "signup_date_present"),
    _rule("no updated_at", "customers", "updated_at", None, "updated_at_present"),
    _rule("malformed email", "customers", "email", "li.na.at.example", "email_format", warn=True),
    _rule("malformed phone", "customers", "phone", "call me", "phone_format", warn=True),
    _rule("no product name", "products", "product_name", None, "product_name_present"),
    _rule("no category", "products", "category", None, "category_present"),
    _rule("negative list price", "products", "list_price", "-5", "list_price_not_negative", warn=True),
    # One order in eight (over 5%) with an unknown customer stops the load.
    _rule("unknown customer on an order", "orders", "customer_id", "C-NOBODY", "order_customer_known",
          stops=True),
    _rule("no customer on an order", "orders", "customer_id", None, "customer_id_present"),
    _rule("order after the as-of date", "orders", "order_date", "2026-12-24", "order_date_not_in_future"),
    _rule("unknown order status", "orders", "status", "shipped?", "order_status_known"),
    _rule("currency as a word", "orders", "currency", "EURO", "currency_iso_4217"),
    _rule("no order date", "orders", "order_date", None, "order_date_present"),
    _rule("line of an unknown order", "order_lines", "order_id", "O-NONE", "line_order_known"),
    _rule("line of an unknown product", "order_lines", "product_id", "P-NONE", "line_product_known"),
    _rule("zero quantity", "order_lines", "quantity", "0", "quantity_positive"),
    _rule("negative quantity", "order_lines", "quantity", "-3", "quantity_positive"),
    _rule("negative unit price", "order_lines", "unit_price", "-1.5", "unit_price_not_negative"),
    _rule("discount over 100%", "order_lines", "discount_pct", "1.5", "discount_between_0_and_1"),
    _rule("no line number", "order_lines", "line_number", None, "line_number_present"),
    _rule("unknown funnel stage", "opportunities", "stage", "maybe", "funnel_stage_known"),
    _rule("probability over 1", "opportunities", "probability", "1.5", "probability_between_0_and_1"),
    _rule("negative deal amount", "opportunities", "amount", "-100", "amount_not_negative"),
    _rule("interaction of an unknown customer", "interactions", "customer_id", "C-NOBODY",
          "interaction_customer_known"),
    _rule("unknown interaction type", "interactions", "interaction_type", "telepathy",
          "interaction_type_known", warn=True),
    _rule("unknown target level", "sales_targets", "level", "galaxy", "level_known"),
    _rule("negative target", "sales_targets", "target_amount", "-10", "target_not_negative"),
    Kind("a later version in the same file", "customers", _later_version, None, _name_kept("the later name"),
         formats=RULES),
    Kind("an exact duplicate row", "customers", _exact_copy, None, _unique_names, formats=RULES),
    Kind("Chinese name", "customers", _cell("customer_name", "北京贸易有限公司"), None,
         _name_kept("北京贸易有限公司"), formats=RULES),
    Kind("Arabic name with an emoji", "customers", _cell("customer_name", "شركة النور 🌙"), None,
         _name_kept("شركة النور 🌙"), formats=RULES),
    Kind("name with quotes, a comma and a line break", "customers",
         _cell("customer_name", 'Smith, "Jones"\n& Co'), None, _name_kept('Smith, "Jones"\n& Co'),
         formats=RULES),
    Kind("a 5,000-character name", "customers", _cell("customer_name", "N" * 5000), None,
         _name_kept("N" * 5000), formats=RULES),
]  # fmt: skip
ALL_KINDS = KINDS + RULE_KINDS


def _write(frame: pd.DataFrame, folder: Path, entity: str, fmt: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        frame.astype({c: str for c in frame.columns if frame[c].dtype == object}).to_parquet(
            folder / f"{entity}.parquet", index=False
        )
    else:
        frame.to_csv(folder / f"{entity}.{fmt}", index=False)


@pytest.fixture(scope="module")
def crm() -> CrmDataset:
    return generate_crm(n_customers=12, seed=5, defect_rate=0)


@pytest.fixture(autouse=True)
def _tally(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test's outcome goes on its report (``bad_input``), so tests/conftest.py can add them up in the
    process that prints the summary, whichever worker process ran the test."""
    before = OUTCOMES.copy()
    yield
    for outcome, runs in (OUTCOMES - before).items():
        request.node.user_properties.extend([("bad_input", outcome)] * runs)


def summary_line(outcomes: Counter[str]) -> str:
    """The bad-input suite's closing line (printed by tests/conftest.py at the end of the session)."""
    kinds = len(ALL_KINDS) + len(UNREADABLE_FILES) + len(BROKEN_LINES) + 1  # and the row dated 2099
    return (
        f"bad input: {kinds} kinds, {sum(outcomes.values())} runs over formats and engines tried: "
        f"{outcomes['handled']} handled (loaded as meant, quarantined or stopped by the named rule, or a "
        f"clear error naming the file), {outcomes['silent']} silent, {outcomes['unclear']} unclear"
    )


def _identity_mapping(folder: Path, columns: dict[str, list[str]]) -> Path:
    """A mapping file over the entities' CSV files, each model column from the header of its name: the
    mapping source (DuckDB reading the CSV, numbers detected) in front of the same loader."""
    document = {
        "version": 1,
        "source": {"path": ".", "tables": {name: {"file": f"{name}.csv"} for name in columns}},
        "entities": {name: {"from": name, "columns": {c: c for c in cols}} for name, cols in columns.items()},
    }
    path = folder / "mapping.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


def _load(crm: CrmDataset, kind: Kind, fmt: str, folder: Path, url: str) -> tuple[LoadResult, object]:
    engine = get_engine(url)
    create_schema(engine)
    order = [e.name for e in load_order()]
    columns: dict[str, list[str]] = {}
    for name in order[: order.index(kind.entity) + 1]:
        frame = crm[name]
        if name == kind.entity:
            # Eight records, each in its latest version, so the changed row is the one that counts.
            latest = frame.sort_values("updated_at").drop_duplicates(list(get_entity(name).key), keep="last")
            frame = kind.change(latest.sort_index().head(8).copy())
        _write(frame, folder / "exports", name, "csv" if fmt == "mapping" else fmt)
        columns[name] = list(frame.columns)
    source: FileSource | MappedSource
    if fmt == "mapping":
        source = MappedSource(_identity_mapping(folder / "exports", columns))
    else:
        source = FileSource(folder / "exports", prefer="parquet" if fmt == "parquet" else "csv")
    result = None
    for name in order[: order.index(kind.entity) + 1]:
        result = ingest_from_source(engine, source, name, AS_OF, "bad-input")
    assert result is not None
    return result, engine


@pytest.mark.parametrize(
    ("kind", "fmt"), [(k, f) for k in ALL_KINDS for f in k.formats], ids=lambda v: str(v)
)
def test_each_kind_of_bad_input_is_handled(
    crm: CrmDataset, kind: Kind, fmt: str, tmp_path: Path, duckdb_url: str
) -> None:
    _run(crm, kind, fmt, tmp_path, duckdb_url)


# PostgreSQL: the kinds whose values reach the warehouse's writes (types, text in other scripts); the
# rules themselves are evaluated before the write, the same way on either engine.
ON_POSTGRES = KINDS + [kind for kind in RULE_KINDS if kind.rule is None]


@pytest.mark.parametrize("kind", ON_POSTGRES, ids=str)
def test_each_kind_of_bad_input_is_handled_on_postgres(
    crm: CrmDataset, kind: Kind, tmp_path: Path, postgres_url: str
) -> None:
    _run(crm, kind, "csv", tmp_path, postgres_url)


def _run(crm: CrmDataset, kind: Kind, fmt: str, tmp_path: Path, url: str) -> None:
    try:
        result, engine = _load(crm, kind, fmt, tmp_path, url)
    except DataQualityError as stopped:
        if not kind.stops or kind.rule not in {f["rule"] for f in stopped.failures}:
            OUTCOMES["unclear"] += 1
            raise
        OUTCOMES["handled"] += 1
        return
    except Exception:
        OUTCOMES["unclear"] += 1
        raise
    if kind.stops:
        OUTCOMES["silent"] += 1
        pytest.fail(f"{kind}: the load should have stopped on {kind.rule}")
    entity = get_entity(kind.entity)
    assert result.rows_read == result.rows_loaded + result.rows_quarantined + result.rows_duplicate
    core = read_frame(engine, f"select * from core.{entity.core_table}")
    held = read_frame(
        engine,
        "select failed_rules, original_row from quality.quarantine where entity = :e",
        {"e": entity.name},
    )
    checks = read_frame(engine, "select rule_name, success from quality.validation_results")
    failed_checks = set(checks.loc[~checks["success"].astype(bool), "rule_name"])
    engine.dispose()  # type: ignore[attr-defined]
    try:
        if kind.rule is None:
            assert result.rows_quarantined == 0, held
            assert kind.check is not None
            kind.check(core, held)
        elif kind.warn:
            # A warning: the row loads, and the failed check is in the validation history.
            assert result.rows_quarantined == 0 and kind.rule in failed_checks, (held, failed_checks)
        else:
            rules = held["failed_rules"].str.split(";").explode()
            assert kind.rule in set(rules), held
            # The original text is kept beside the reason.
            assert held["original_row"].map(json.loads).map(bool).all()
    except AssertionError:
        OUTCOMES["silent"] += 1
        raise
    OUTCOMES["handled"] += 1


UNREADABLE_FILES = [
    ("GB18030 text", "csv", r"customers\.csv: not utf-8 text \(byte \d+"),
    ("UTF-16 text", "csv", r"customers\.csv: not utf-8 text \(byte 0"),
    ("truncated gzip", "csv.gz", r"customers\.csv\.gz: the gzip file is truncated or corrupt"),
    ("empty file", "csv", r"customers\.csv: the file is empty; a CSV export needs at least its header row"),
    ("CSV named .parquet", "parquet", r"customers\.parquet'\]: not a Parquet file, or a truncated one"),
    ("truncated Parquet", "parquet", r"customers\.parquet'\]: not a Parquet file, or a truncated one"),
]


def _spoil(path: Path, kind: str) -> None:
    data = path.read_bytes()
    spoiled = {
        "GB18030 text": lambda: data.decode("utf-8").encode("gb18030"),
        "UTF-16 text": lambda: data.decode("utf-8").encode("utf-16"),
        "empty file": lambda: b"",
        "CSV named .parquet": lambda: b"customer_id,customer_name\nC1,Anna\n",
    }.get(kind, lambda: data[: len(data) // 2])
    path.write_bytes(spoiled())


@pytest.mark.parametrize(("kind", "fmt", "message"), UNREADABLE_FILES)
def test_a_file_that_cannot_be_read_is_an_error_naming_it(
    crm: CrmDataset, kind: str, fmt: str, message: str, tmp_path: Path, duckdb_url: str
) -> None:
    folder = tmp_path / "exports"
    _write(crm["customers"], folder, "customers", fmt)
    _spoil(folder / f"customers.{fmt}", kind)
    engine = get_engine(duckdb_url)
    create_schema(engine)
    prefer = "parquet" if fmt == "parquet" else "csv"
    try:
        with pytest.raises(UnreadableFile, match=message):
            ingest_from_source(engine, FileSource(folder, prefer=prefer), "customers", AS_OF, "bad-input")
    except AssertionError:
        OUTCOMES["unclear"] += 1
        raise
    finally:
        engine.dispose()
    OUTCOMES["handled"] += 1


# Lines that do not fit the header: appended to a clean customers file as raw text.
BROKEN_LINES = {
    "a line with too many fields": ("C-EXTRA,a,b,c,d,e,f,g,h,i,j,k,l,m,n,o", "too many columns"),
    "a line with too few fields": ("C-SHORT,a", "missing columns"),
    "a line with an unclosed quote": ('C-QUOTE,"never closed,DE,EMEA', "unquoted value"),
}


@pytest.mark.parametrize("fmt", ["csv", "csv.gz", "mapping"])
@pytest.mark.parametrize("kind", BROKEN_LINES)
def test_a_line_that_does_not_fit_the_header_is_quarantined_with_its_text_or_named(
    crm: CrmDataset, kind: str, fmt: str, tmp_path: Path, duckdb_url: str
) -> None:
    """Before: DuckDB took a longer line for the header (every column "missing"), or stopped with "Error
    when sniffing file" and no line; through a mapping an unclosed quote loaded a made-up row. Now the file
    source quarantines the line as ``unreadable_line`` with its text and loads the rest; a mapping stops
    with the file, the line and its text."""
    line, problem = BROKEN_LINES[kind]
    folder = tmp_path / "exports"
    customers = crm["customers"].sort_values("updated_at").drop_duplicates("customer_id", keep="last").head(8)
    text = customers.to_csv(index=False) + line + "\n"
    path = folder / ("customers.csv.gz" if fmt == "csv.gz" else "customers.csv")
    folder.mkdir(parents=True)
    path.write_bytes(gzip.compress(text.encode()) if fmt == "csv.gz" else text.encode())
    engine = get_engine(duckdb_url)
    create_schema(engine)
    try:
        if fmt == "mapping":
            source = MappedSource(_identity_mapping(folder, {"customers": list(customers.columns)}))
            with pytest.raises(MappingError, match=rf"customers\.csv line 10: {problem}: '{re.escape(line)}"):
                ingest_from_source(engine, source, "customers", AS_OF, "bad-input")
        else:
            result = ingest_from_source(engine, FileSource(folder, prefer="csv"), "customers", AS_OF, "x")
            held = read_frame(engine, "select failed_rules, original_row from quality.quarantine")
            core = read_frame(engine, "select customer_id from core.dim_customer")
            assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (9, 8, 1)
            assert len(core) == 8 and len(held) == 1
            assert "unreadable_line" in held["failed_rules"].iloc[0].split(";")
            kept = json.loads(held["original_row"].iloc[0])["line"]
            assert kept.startswith(f"{path} line 10: {problem}: ") and kept.endswith(line), kept
    except AssertionError:
        OUTCOMES["silent" if fmt != "mapping" else "unclear"] += 1
        raise
    finally:
        engine.dispose()
    OUTCOMES["handled"] += 1


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_row_dated_in_2099_is_counted_and_warned_about_not_skipped_in_silence(
    crm: CrmDataset, fmt: str, tmp_path: Path, duckdb_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    customers = crm["customers"].head(8).copy()
    customers.loc[customers.index[0], "updated_at"] = pd.Timestamp("2099-01-01 09:00")
    _write(customers, tmp_path / "exports", "customers", fmt)
    engine = get_engine(duckdb_url)
    create_schema(engine)
    source = FileSource(tmp_path / "exports", prefer="parquet" if fmt == "parquet" else "csv")
    result = ingest_from_source(engine, source, "customers", AS_OF, "bad-input")
    core = read_frame(engine, "select customer_id from core.dim_customer")
    engine.dispose()
    assert result.rows_in_future == 1 and result.rows_read == 7 and len(core) == 7
    assert "1 source rows are dated after" in caplog.text
    OUTCOMES["handled"] += 1
