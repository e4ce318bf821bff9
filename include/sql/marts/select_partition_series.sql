-- The monthly revenue of the series in one forecast partition of a run, with the month's buying customers
-- (a driver of the regression candidate).
select
    series.series_id,
    series.level,
    series.member,
    series.period_start,
    series.revenue,
    series.customers
from marts.sales_series as series
inner join marts.forecast_partitions as part
    on part.series_id = series.series_id and part.run_id = :run_id and part.partition_no = :partition_no
where series.grain = 'month';
