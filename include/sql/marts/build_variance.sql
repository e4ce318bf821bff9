-- Compare each complete month's actuals with every forecast snapshot that covered it, and with the target.
-- Re-running an as-of date replaces that report's rows only.
delete from marts.fct_variance where report_as_of = :as_of_date;

insert into marts.fct_variance (
    report_as_of, period_start, series_id, level, member, horizon, forecast_as_of, model,
    actual, forecast, lo95, hi95, target, variance_abs, variance_pct,
    target_variance_abs, target_variance_pct, within_interval_95, run_id, created_at
)
with ranked_snapshot as (
    select
        snapshot.*,
        row_number() over (
            partition by snapshot.as_of_date, snapshot.series_id, snapshot.period_start
            order by snapshot.created_at desc, snapshot.run_id desc
        ) as recency_rank
    from marts.forecast_snapshot as snapshot
    where snapshot.as_of_date < :as_of_date
),

forecast as (
    select * from ranked_snapshot where recency_rank = 1
),

actuals as (
    select series_id, level, member, period_start, revenue as actual
    from marts.sales_series
    where period_start < :as_of_month
),

final as (
    select
        actuals.period_start,
        actuals.series_id,
        actuals.level,
        actuals.member,
        forecast.horizon,
        forecast.as_of_date as forecast_as_of,
        forecast.model,
        actuals.actual,
        forecast.forecast,
        forecast.lo95,
        forecast.hi95,
        target.target_amount as target,
        actuals.actual - forecast.forecast as variance_abs,
        case when forecast.forecast <> 0
            then (actuals.actual - forecast.forecast) / abs(forecast.forecast) end as variance_pct,
        actuals.actual - target.target_amount as target_variance_abs,
        case when target.target_amount <> 0
            then (actuals.actual - target.target_amount) / abs(target.target_amount) end as target_variance_pct,
        actuals.actual between forecast.lo95 and forecast.hi95 as within_interval_95
    from actuals
    inner join forecast
        on forecast.series_id = actuals.series_id
        and forecast.period_start = actuals.period_start
    left join core.fct_sales_target as target
        on target.level = actuals.level
        and target.member = actuals.member
        and target.period_start = actuals.period_start
)

select
    :as_of_date as report_as_of,
    period_start, series_id, level, member, horizon, forecast_as_of, model,
    actual, forecast, lo95, hi95, target, variance_abs, variance_pct,
    target_variance_abs, target_variance_pct, within_interval_95,
    :run_id as run_id,
    :created_at as created_at
from final;
