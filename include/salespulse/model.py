"""The CRM data model: one definition per entity, shared by the generator, loader and checks.

The DDL in ``include/sql/raw`` and ``include/sql/core`` creates the same columns;
``tests/test_warehouse.py`` keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ColumnKind = Literal["string", "date", "timestamp", "int", "float", "bool"]
# Personal data: who a customer is and how to reach them. The reporting views show a pseudonym or leave
# these out; reporting_pii holds them for the role granted personal data; validation results, Data Docs
# and alerts never carry their values (docs/security.md).
PERSONAL_DATA = frozenset({"customer_name", "email", "phone"})


@dataclass(frozen=True)
class Column:
    name: str
    kind: ColumnKind
    required: bool = False
    # "latest": the newest version of the record wins (the default). "earliest": the smallest value any
    # version has had, for attributes that mean "first" (a signup date), so a later file cannot move it.
    keep: Literal["latest", "earliest"] = "latest"

    @property
    def pii(self) -> bool:
        """Personal data (:data:`PERSONAL_DATA`)."""
        return self.name in PERSONAL_DATA


@dataclass(frozen=True)
class Entity:
    """A CRM entity as exported by the source and landed in ``raw.<name>``."""

    name: str
    core_table: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    updated_at: str = "updated_at"
    depends_on: tuple[str, ...] = ()
    # A source must provide a required entity; an optional one it does not provide is recorded as "not
    # provided" and the steps that need it are skipped. Products stay required: order lines are checked
    # against them and the sales fact takes each line's category from its product.
    required: bool = True

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]


def _cols(
    *spec: tuple[str, ColumnKind] | tuple[str, ColumnKind, bool] | tuple[str, ColumnKind, bool, str],
) -> tuple[Column, ...]:
    return tuple(Column(*s) for s in spec)


CUSTOMERS = Entity(
    name="customers",
    core_table="dim_customer",
    key=("customer_id",),
    columns=_cols(
        ("customer_id", "string", True),
        ("customer_name", "string", True),
        ("email", "string"),
        ("phone", "string"),
        ("country_code", "string", True),
        ("region", "string", True),
        ("channel", "string"),
        ("industry", "string"),
        ("segment", "string"),
        ("sales_owner", "string"),
        ("signup_date", "date", True, "earliest"),
        ("updated_at", "timestamp", True),
    ),
)

PRODUCTS = Entity(
    name="products",
    core_table="dim_product",
    key=("product_id",),
    columns=_cols(
        ("product_id", "string", True),
        ("product_name", "string", True),
        ("category", "string", True),
        ("list_price", "float"),
        ("updated_at", "timestamp", True),
    ),
)

ORDERS = Entity(
    name="orders",
    core_table="fct_order",
    key=("order_id",),
    columns=_cols(
        ("order_id", "string", True),
        ("customer_id", "string", True),
        ("order_date", "date", True),
        ("status", "string", True),
        ("channel", "string"),
        # Where the sale was made and who made it, when the source keeps them on the order (a store whose
        # customers buy in several regions); empty, they come from the customer.
        ("region", "string"),
        ("sales_owner", "string"),
        ("currency", "string", True),
        ("updated_at", "timestamp", True),
    ),
    depends_on=("customers",),
)

ORDER_LINES = Entity(
    name="order_lines",
    core_table="fct_order_line",
    key=("order_id", "line_number"),
    columns=_cols(
        ("order_id", "string", True),
        ("line_number", "int", True),
        ("product_id", "string", True),
        ("quantity", "int", True),
        ("unit_price", "float", True),
        ("discount_pct", "float"),
        ("updated_at", "timestamp", True),
    ),
    depends_on=("orders", "products"),
)

INTERACTIONS = Entity(
    name="interactions",
    required=False,
    core_table="fct_interaction",
    key=("interaction_id",),
    columns=_cols(
        ("interaction_id", "string", True),
        ("customer_id", "string", True),
        ("interaction_at", "timestamp", True),
        ("interaction_type", "string", True),
        ("outcome", "string"),
        ("updated_at", "timestamp", True),
    ),
    depends_on=("customers",),
)

OPPORTUNITIES = Entity(
    name="opportunities",
    required=False,
    core_table="fct_opportunity",
    key=("opportunity_id",),
    columns=_cols(
        ("opportunity_id", "string", True),
        ("customer_id", "string", True),
        ("owner", "string"),
        ("stage", "string", True),
        ("last_open_stage", "string"),
        ("amount", "float", True),
        ("probability", "float"),
        ("currency", "string", True),
        ("created_date", "date", True),
        ("expected_close_date", "date"),
        ("closed_date", "date"),
        ("updated_at", "timestamp", True),
    ),
    depends_on=("customers",),
)

SALES_TARGETS = Entity(
    name="sales_targets",
    required=False,
    core_table="fct_sales_target",
    key=("period_start", "level", "member"),
    columns=_cols(
        ("period_start", "date", True),
        ("level", "string", True),
        ("member", "string", True),
        ("target_amount", "float", True),
        ("currency", "string", True),
        ("updated_at", "timestamp", True),
    ),
)

# Load order respects referential integrity: parents before children.
ENTITIES: tuple[Entity, ...] = (
    CUSTOMERS,
    PRODUCTS,
    SALES_TARGETS,
    ORDERS,
    ORDER_LINES,
    INTERACTIONS,
    OPPORTUNITIES,
)
ENTITY_BY_NAME = {e.name: e for e in ENTITIES}


def load_order(entities: tuple[Entity, ...] = ENTITIES) -> tuple[Entity, ...]:
    """The entities in an order where each comes after the ones it ``depends_on`` (its references are
    checked against core, so they load first); ties keep the listed order. An unknown or circular
    dependency is an error."""
    names = {e.name for e in entities}
    done: list[Entity] = []
    pending = list(entities)
    while pending:
        ready = [e for e in pending if all(d in {x.name for x in done} for d in e.depends_on)]
        if not ready:
            missing = {d for e in pending for d in e.depends_on if d not in names}
            raise ValueError(f"entities {[e.name for e in pending]} cannot load: {missing or 'a cycle'}")
        done.append(ready[0])
        pending.remove(ready[0])
    return tuple(done)


FUNNEL_STAGES = ("prospecting", "qualification", "proposal", "negotiation", "closed_won", "closed_lost")
ORDER_STATUSES = ("completed", "returned", "cancelled")
# Metadata columns every landed row carries, so each row traces back to the run that produced it.
LOAD_METADATA = ("_batch_id", "_run_id", "_source", "_loaded_at", "_quarantined", "_extra")


def get_entity(name: str) -> Entity:
    try:
        return ENTITY_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown entity {name!r}; known: {sorted(ENTITY_BY_NAME)}") from None


def _note(column: Column) -> str:
    notes = []
    if column.keep == "earliest":
        notes.append("keeps the earliest value across versions")
    if column.pii:
        notes.append(
            "personal data: a pseudonym or absent in `reporting`, in `reporting_pii` for the PII role"
        )
    return "; ".join(notes)


def describe_markdown(entities: tuple[Entity, ...] = ENTITIES) -> str:
    """The model as Markdown: each entity, its key, whether a source must provide it, and its columns
    (``docs/model.md`` is this, kept in step by a test; ``salespulse model`` prints it)."""
    lines = [
        "# The data model",
        "",
        "Generated by `salespulse model --markdown`; do not edit by hand. What a source or a mapping file",
        "provides, entity by entity, in load order. A required column must be present (a source without it",
        "is refused); a value that does not fit its type is quarantined with its original text.",
        "",
    ]
    for entity in load_order(entities):
        need = "required" if entity.required else "optional: a source may leave it out"
        after = f"; loads after {', '.join(entity.depends_on)}" if entity.depends_on else ""
        lines += [f"## `{entity.name}`", "", f"Key: `{', '.join(entity.key)}`; {need}{after}.", ""]
        lines += ["| column | type | required | note |", "| --- | --- | --- | --- |"]
        lines += [
            f"| `{c.name}` | {c.kind} | {'yes' if c.required else ''} | {_note(c)} |" for c in entity.columns
        ]
        lines.append("")
    return "\n".join(lines)
