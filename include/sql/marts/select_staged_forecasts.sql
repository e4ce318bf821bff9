-- The base forecasts a run's partitions staged, before reconciliation.
select *
from marts.forecast_staging
where run_id = :run_id;
