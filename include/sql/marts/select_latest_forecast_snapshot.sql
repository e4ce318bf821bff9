-- The newest forecast snapshot made on or before the as-of date: the one the funnel forecast adjusts and
-- the report draws.
with latest as (
    select run_id
    from marts.forecast_snapshot
    where as_of_date <= :as_of
    order by as_of_date desc, created_at desc
    limit 1
)

select snapshot.*
from marts.forecast_snapshot as snapshot
inner join latest on latest.run_id = snapshot.run_id;
