"""``salespulse check-mapping FILE``: what a mapping file gives the model, before anything is loaded.

For each entity, in load order: whether it is mapped (and whether it must be), which model columns are
mapped and which optional ones are not, and the first few rows typed as the loader types them, with any
value that would be quarantined and why. A mapping DuckDB refuses is reported with the entity, the column
and the expression. Nothing is written anywhere.

Personal data (the model's :data:`~salespulse.model.PERSONAL_DATA` columns) is masked in the preview: the
first character of each part and the length, enough to see that the right column is mapped. Terminals are
logged and screens are shared; ``show_personal_data`` shows it in clear.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from salespulse.ingest import coerce_types
from salespulse.mapping import MappingError, load_mapping
from salespulse.model import load_order


def mask(value: object) -> object:
    """``Müller GmbH`` -> ``M… G… (11)``; ``anna@example.de`` -> ``a…@e… (15)``; empty stays empty."""
    if not isinstance(value, str) or not value:
        return value
    parts = value.replace("@", " @").split()
    masked = " ".join(("@" + p[1:2] if p.startswith("@") else p[:1]) + "…" for p in parts).replace(" @", "@")
    return f"{masked} ({len(value)})"


def check_mapping(
    path: str | Path, source_dir: Path | None = None, rows: int = 3, show_personal_data: bool = False
) -> tuple[list[str], bool]:
    """The report's lines, and whether the mapping can feed the pipeline (every required entity mapped and
    readable)."""
    try:
        mapping = load_mapping(path, source_dir)
    except MappingError as error:
        return [f"error: {error}"], False
    lines = [f"mapping {mapping.path} (files in {mapping.folder})"]
    usable = True
    for entity in load_order():
        need = "required" if entity.required else "optional"
        spec = mapping.entities.get(entity.name)
        if spec is None:
            usable &= not entity.required
            lines.append(
                f"{entity.name} ({need}): not mapped"
                + (" - a source must provide it" if entity.required else "")
            )
            continue
        unmapped = [c.name for c in entity.columns if c.name not in spec.columns]
        lines.append(f"{entity.name} ({need}): {len(spec.columns)} of {len(entity.columns)} columns mapped")
        if unmapped:
            lines.append(f"  not mapped (optional columns, left empty): {', '.join(unmapped)}")
        try:
            sample = next(mapping.iter_entity(entity.name, chunk_rows=rows), pd.DataFrame()).head(rows)
        except MappingError as error:
            usable = False
            lines.append(f"  error: {error}")
            continue
        if sample.empty:
            lines.append("  no rows (check the source files and the mapping's where)")
            continue
        typed, problems = coerce_types(sample, entity)
        preview = typed[[c for c in entity.column_names if c in spec.columns]].copy()
        if not show_personal_data:
            for column in (c.name for c in entity.columns if c.pii and c.name in preview):
                preview[column] = preview[column].map(mask)
        lines += ["  " + line for line in preview.to_string(index=False, max_colwidth=24).splitlines()]
        for position, problem in enumerate(problems):
            if problem:
                originals = {rule.removeprefix("type_"): sample[rule.removeprefix("type_")].iloc[position]
                             for rule in problem.split(";")}  # fmt: skip
                lines.append(f"  row {position + 1} would be quarantined: {problem} (the text: {originals})")
    lines.append(
        "usable: every required entity is mapped and readable" if usable else "NOT usable yet: see above"
    )
    return lines, usable
