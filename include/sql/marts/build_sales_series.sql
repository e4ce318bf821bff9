-- Rebuild the revenue series of every level, monthly and weekly, from completed orders: each series from
-- its first period with sales to the last complete period before the as-of date, periods without sales as
-- zero (the incomplete current month or week is left out).
delete from marts.sales_series;

insert into marts.sales_series (
    grain, series_id, level, member, period_start, revenue, orders, customers, as_of_date, run_id
)
with observed as (
    select grain, series_id, level, member, period_start, revenue, orders, customers
    from marts.sales_by_level
    where
        (grain = 'month' and period_start < :as_of_month)
        or (grain = 'week' and period_start < :as_of_week)
),

first_periods as (
    select grain, series_id, level, member, min(period_start) as first_period
    from observed
    group by grain, series_id, level, member
),

calendar as (
    select
        first_periods.grain,
        first_periods.series_id,
        first_periods.level,
        first_periods.member,
        cast(periods.period_start as date) as period_start
    from first_periods
    cross join lateral generate_series(
        cast(first_periods.first_period as timestamp),
        cast(case when first_periods.grain = 'month' then :last_month else :last_week end as timestamp),
        case when first_periods.grain = 'month' then interval '1 month' else interval '7 days' end
    ) as periods (period_start)
),

final as (
    select
        calendar.grain,
        calendar.series_id,
        calendar.level,
        calendar.member,
        calendar.period_start,
        coalesce(observed.revenue, 0) as revenue,
        coalesce(observed.orders, 0) as orders,
        coalesce(observed.customers, 0) as customers
    from calendar
    left join observed
        on
            observed.grain = calendar.grain
            and observed.series_id = calendar.series_id
            and observed.period_start = calendar.period_start
)

select
    grain, series_id, level, member, period_start, revenue, orders, customers,
    :as_of_date as as_of_date,
    :run_id as run_id
from final;
