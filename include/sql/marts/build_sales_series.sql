-- Rebuild monthly revenue per level (total, region, segment, category) from completed orders.
-- Only complete months before the as-of month; zero months are filled by the forecaster.
delete from marts.sales_series;

insert into marts.sales_series (
    series_id, level, member, period_start, revenue, orders, customers, as_of_date, run_id
)
with sales as (
    select
        order_id,
        customer_id,
        cast(date_trunc('month', order_date) as date) as period_start,
        coalesce(region, 'unknown') as region,
        coalesce(segment, 'unknown') as segment,
        coalesce(category, 'unknown') as category,
        net_amount
    from core.sales_lines
    where status = 'completed'
      and order_date < :as_of_month
),

by_level as (
    select 'total' as level, 'all' as member, period_start, order_id, customer_id, net_amount from sales
    union all
    select 'region' as level, region as member, period_start, order_id, customer_id, net_amount from sales
    union all
    select 'segment' as level, segment as member, period_start, order_id, customer_id, net_amount from sales
    union all
    select 'category' as level, category as member, period_start, order_id, customer_id, net_amount from sales
),

final as (
    select
        level || ':' || member as series_id,
        level,
        member,
        period_start,
        sum(net_amount) as revenue,
        count(distinct order_id) as orders,
        count(distinct customer_id) as customers
    from by_level
    group by level, member, period_start
)

select
    series_id, level, member, period_start, revenue, orders, customers,
    :as_of_date as as_of_date,
    :run_id as run_id
from final;
