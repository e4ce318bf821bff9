-- Merge one landed batch into its core table, last update wins.
-- Identifiers ($core_table, $raw_table, $key_match, $columns) come from salespulse.model, never from data;
-- values are bound parameters.

-- 1. Drop the core rows the batch supersedes (same key, not newer than the incoming row).
delete from core.$core_table
where exists (
    select 1
    from raw.$raw_table as incoming
    where incoming._batch_id = :batch_id
      and not incoming._quarantined
      and $key_match
      and incoming.updated_at >= core.$core_table.updated_at
);

-- 2. Insert the batch's rows whose key is not (any longer) in core. A late-arriving older version
--    finds the newer row still there and is skipped.
insert into core.$core_table ($columns, _batch_id, _run_id, _loaded_at)
select $incoming_columns, incoming._batch_id, incoming._run_id, incoming._loaded_at
from raw.$raw_table as incoming
where incoming._batch_id = :batch_id
  and not incoming._quarantined
  and not exists (
      select 1 from core.$core_table
      where $key_match
  );
