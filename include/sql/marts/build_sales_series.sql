-- Rebuild monthly revenue per level (total, region, segment, category, sales owner) from completed orders.
-- Only complete months before the as-of month; zero months are filled by the forecaster.
delete from marts.sales_series;

insert into marts.sales_series (
    series_id, level, member, period_start, revenue, orders, customers, as_of_date, run_id
)
select
    series_id, level, member, period_start, revenue, orders, customers,
    :as_of_date as as_of_date,
    :run_id as run_id
from core.sales_by_level_month
where period_start < :as_of_month;
