-- The as-of dates of the forecast snapshots made on or before :latest.
select distinct as_of_date
from marts.forecast_snapshot
where as_of_date <= :latest
order by as_of_date;
