-- How many churn warnings the latest segments snapshot on or before the as-of date raised.
with latest as (
    select max(snapshot_date) as snapshot_date
    from marts.churn_warnings
    where snapshot_date <= :as_of
)

select count(*) as n
from marts.churn_warnings as warnings
inner join latest on latest.snapshot_date = warnings.snapshot_date;
