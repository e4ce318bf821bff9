"""The ``salespulse`` command: run the pipeline on your own data, describe the model, run the demo.

    salespulse run --from 2011-01-01 --to 2011-12-01 --mapping online_retail
    salespulse run --from 2026-11-01 --steps ingest,segments
    salespulse check-mapping my_mapping.yaml
    salespulse model [--markdown]
    salespulse demo [--customers 3000 --months 4]

Settings (warehouse, source, forecast levels, ...) come from the environment as everywhere else
(``.env.example``); ``--mapping`` and ``--warehouse`` override the source and the warehouse for one command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import date

from salespulse.config import Settings
from salespulse.errors import PermanentError
from salespulse.model import describe_markdown, load_order
from salespulse_cli.run import STEPS, monthly_as_of_dates, parse_steps, run_range, with_mapping


def _date(raw: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {raw!r}") from exc


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="salespulse", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the steps for monthly as-of dates, in order")
    run.add_argument(
        "--from", dest="start", type=_date, required=True, help="first as-of date (a month's first day)"
    )
    run.add_argument("--to", dest="end", type=_date, help="last as-of date (default: --from)")
    run.add_argument(
        "--steps", type=parse_steps, default=STEPS, help=f"some of {','.join(STEPS)} (default: all)"
    )
    run.add_argument("--mapping", help="a mapping file, or the name of one in include/mappings/")
    run.add_argument("--warehouse", help="a SQLAlchemy URL (default: WAREHOUSE_URL or the embedded DuckDB)")
    run.add_argument(
        "--full-refresh",
        action="store_true",
        help="read everything before the first date, ignoring watermarks",
    )
    check = commands.add_parser("check-mapping", help="what a mapping file gives the model, with a preview")
    check.add_argument("mapping", help="a mapping file, or the name of one in include/mappings/")
    check.add_argument("--rows", type=int, default=3, help="rows to preview per entity")
    check.add_argument(
        "--show-personal-data",
        action="store_true",
        help="names, emails, phones in clear",
    )
    model = commands.add_parser("model", help="the entities and columns a source provides")
    model.add_argument("--markdown", action="store_true", help="as Markdown (docs/model.md)")
    demo = commands.add_parser("demo", help="generate a CRM and run the real DAGs on it with dag.test()")
    demo.add_argument("--customers", type=int, default=3000)
    demo.add_argument("--months", type=int, default=4)
    demo.add_argument("--seed", type=int, default=42)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "model":
        print(describe_markdown() if args.markdown else _model_table())
        return 0
    if args.command == "check-mapping":
        from salespulse_cli.check_mapping import check_mapping

        settings = Settings.from_env()
        lines, usable = check_mapping(
            args.mapping, settings.source.source_dir, args.rows, args.show_personal_data
        )
        print("\n".join(lines))
        return 0 if usable else 1
    if args.command == "demo":
        from salespulse_cli import demo

        return demo.main(
            [
                "demo",
                "--customers",
                str(args.customers),
                "--months",
                str(args.months),
                "--seed",
                str(args.seed),
            ]
        )
    try:
        settings = Settings.from_env()
        if args.warehouse:
            settings = replace(settings, warehouse_url=args.warehouse)
        if args.mapping:
            settings = with_mapping(settings, args.mapping)
        dates = monthly_as_of_dates(args.start, args.end or args.start)
        if not dates:
            print(f"error: no month starts between {args.start} and {args.end}", file=sys.stderr)
            return 2
        steps = ", ".join(args.steps)
        print(f"salespulse: {steps} for {len(dates)} as-of date(s) into {settings.warehouse_url}")
        run_range(settings, dates, args.steps, full_refresh=args.full_refresh)
    except PermanentError as error:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        from salespulse.quality import DataQualityError

        if not isinstance(error, DataQualityError):
            raise
        print(f"error: a critical data-quality check stopped the load: {error}", file=sys.stderr)
        return 1
    return 0


def _model_table() -> str:
    rows = []
    for entity in load_order():
        columns = ", ".join(f"{c.name}{'*' if c.required else ''}" for c in entity.columns)
        rows.append(f"{entity.name:<14} {'required' if entity.required else 'optional':<9} {columns}")
    return "\n".join([*rows, "", "* a required column. `salespulse model --markdown` adds the types."])


if __name__ == "__main__":
    raise SystemExit(main())
