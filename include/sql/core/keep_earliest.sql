-- A column whose meaning is "first" (a customer's signup date) keeps the earliest value any landed,
-- unquarantined version of the record has had, so a later file that only saw a later first purchase does
-- not move it. Runs after the merge, for the keys of the batch just merged. Identifiers come from
-- salespulse.model; the batch id is a bound parameter.
update core.$core_table
set $column = (
    select min(history.$column)
    from raw.$raw_table as history
    where not history._quarantined
      and $history_key_match
)
where exists (
    select 1
    from raw.$raw_table as incoming
    where incoming._batch_id = :batch_id
      and not incoming._quarantined
      and $key_match
);
