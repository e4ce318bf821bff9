-- A column whose meaning is "first" (a customer's signup date) keeps the earliest value any landed,
-- unquarantined version of the record has had, so a later file that only saw a later first purchase does
-- not move it. Runs after the merge, for the keys of the batch just merged. Identifiers come from
-- salespulse.model; the batch id is a bound parameter.
-- One grouped pass over the batch's keys' history, joined to core: a correlated subquery in SET ran once
-- per core row on PostgreSQL, which does not decorrelate it (100k customers: over 27 minutes).
update core.$core_table
set $column = earliest.earliest_value
from (
    select $history_keys, min(history.$column) as earliest_value
    from raw.$raw_table as history
    inner join (
        select distinct $incoming_keys
        from raw.$raw_table as incoming
        where incoming._batch_id = :batch_id
          and not incoming._quarantined
    ) as batch_keys on $batch_history_match
    where not history._quarantined
    group by $history_keys
) as earliest
where $earliest_match;
