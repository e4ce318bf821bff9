-- Stable views for BI tools. Column names here are a contract: add columns, never rename or drop.

-- Latest RFM snapshot per customer, with the customer's attributes.
create or replace view reporting.customer_segments as
with latest as (
    select max(snapshot_date) as snapshot_date from marts.customer_rfm
),

final as (
    select
        rfm.snapshot_date,
        rfm.customer_id,
        -- A pseudonym: the name itself is in reporting_pii.customers, for the PII role only.
        'Customer ' || substr(md5(rfm.customer_id), 1, 10) as customer_name,
        customer.region,
        customer.segment as business_segment,
        customer.sales_owner,
        rfm.recency_days,
        rfm.frequency,
        rfm.monetary,
        rfm.r_score,
        rfm.f_score,
        rfm.m_score,
        rfm.rfm_cell,
        rfm.rfm_segment,
        rfm.run_id,
        rfm.value_tier,
        rfm.purchase_class,
        rfm.lifecycle_stage,
        rfm.p_alive,
        rfm.expected_purchases_12m,
        rfm.clv_12m,
        rfm.cluster,
        rfm.churn_probability
    from marts.customer_rfm as rfm
    inner join latest on latest.snapshot_date = rfm.snapshot_date
    left join core.dim_customer as customer on customer.customer_id = rfm.customer_id
)

select * from final;

-- Customers and revenue per RFM segment for every snapshot (segment mix over time).
create or replace view reporting.segment_summary as
select
    snapshot_date,
    rfm_segment,
    count(*) as customers,
    sum(monetary) as monetary,
    avg(recency_days) as avg_recency_days,
    avg(frequency) as avg_frequency
from marts.customer_rfm
group by snapshot_date, rfm_segment;

-- Each series' actuals beside the most recent forecast snapshot, with its intervals.
create or replace view reporting.forecast_vs_actual as
with latest_run as (
    select run_id
    from marts.forecast_snapshot
    order by as_of_date desc, created_at desc
    limit 1
),

forecast as (
    select snapshot.*
    from marts.forecast_snapshot as snapshot
    inner join latest_run on latest_run.run_id = snapshot.run_id
),

monthly as (
    select series_id, level, member, period_start, revenue
    from marts.sales_series
    where grain = 'month'
),

final as (
    select
        coalesce(series.series_id, forecast.series_id) as series_id,
        coalesce(series.level, forecast.level) as level,
        coalesce(series.member, forecast.member) as member,
        coalesce(series.period_start, forecast.period_start) as period_start,
        series.revenue as actual,
        forecast.forecast,
        forecast.lo80,
        forecast.hi80,
        forecast.lo95,
        forecast.hi95,
        forecast.model,
        forecast.as_of_date as forecast_as_of
    from monthly as series
    full outer join forecast
        on forecast.series_id = series.series_id
        and forecast.period_start = series.period_start
)

select * from final;

-- Variance facts of every reported month: actual vs the forecast first made h months ahead vs target,
-- rolling accuracy and flags. Error = actual - forecast (positive: sales beat the forecast).
create or replace view reporting.variance as
select
    report_as_of,
    period_start,
    series_id,
    level,
    member,
    horizon,
    forecast_as_of,
    model,
    actual,
    forecast,
    lo95,
    hi95,
    target,
    variance_abs,
    variance_pct,
    target_variance_abs,
    target_variance_pct,
    within_interval_95,
    run_id,
    created_at,
    lo80,
    hi80,
    within_interval_80,
    window_periods,
    bias,
    wape,
    mase,
    tracking_signal,
    tracking_z,
    flag_interval,
    flag_tracking_signal,
    material,
    flag_forecast,
    flag_target,
    flagged,
    flag_reasons,
    materiality_threshold
from marts.fct_variance;

-- The flagged rows of the latest reported month, largest variance first, with the thresholds that fired.
create or replace view reporting.variance_flags as
select
    period_start,
    series_id,
    level,
    member,
    horizon,
    actual,
    forecast,
    target,
    variance_abs,
    variance_pct,
    target_variance_pct,
    lo95,
    hi95,
    within_interval_95,
    tracking_signal,
    tracking_z,
    flag_forecast,
    flag_interval,
    flag_tracking_signal,
    flag_target,
    flag_reasons,
    materiality_threshold,
    tracking_z_threshold,
    target_pct_threshold,
    rank() over (order by abs(variance_abs) desc, series_id, horizon) as variance_rank
from marts.fct_variance
where flagged
  and period_start = (select max(period_start) from marts.fct_variance);

-- Forecast accuracy per level and lead over every reported month: how far off, which way, and how often
-- the intervals held. Coverage near 0.80 and 0.95 means the intervals are honest.
create or replace view reporting.forecast_accuracy as
select
    level,
    horizon,
    count(distinct period_start) as months,
    count(*) as facts,
    min(period_start) as first_period,
    max(period_start) as last_period,
    sum(abs(variance_abs)) / nullif(sum(abs(actual)), 0) as wape,
    sum(variance_abs) / nullif(sum(actual), 0) as bias,
    avg(case when within_interval_80 then 1.0 else 0.0 end) as coverage_80,
    avg(case when within_interval_95 then 1.0 else 0.0 end) as coverage_95,
    cast(sum(case when flagged then 1 else 0 end) as bigint) as flagged_facts,
    cast(sum(case when flag_forecast then 1 else 0 end) as bigint) as forecast_flags
from marts.fct_variance
group by level, horizon;

-- Share of expectations passed, per entity per day, and how many rows were quarantined.
create or replace view reporting.data_quality_daily as
with results as (
    select
        entity,
        cast(validated_at as date) as validation_date,
        count(*) as expectations,
        cast(sum(case when success then 1 else 0 end) as bigint) as expectations_passed,
        cast(sum(case when not success and severity = 'critical' then 1 else 0 end) as bigint) as critical_failures
    from quality.validation_results
    group by entity, cast(validated_at as date)
),

quarantined as (
    select entity, cast(quarantined_at as date) as validation_date, count(*) as rows_quarantined
    from quality.quarantine
    group by entity, cast(quarantined_at as date)
),

final as (
    select
        results.entity,
        results.validation_date,
        results.expectations,
        results.expectations_passed,
        results.critical_failures,
        cast(results.expectations_passed as double precision) / results.expectations as quality_score,
        coalesce(quarantined.rows_quarantined, 0) as rows_quarantined
    from results
    left join quarantined
        on quarantined.entity = results.entity
        and quarantined.validation_date = results.validation_date
)

select * from final;

-- The same measures per load date (the batches' as-of date) instead of the day the checks ran: a backfill of
-- past dates shows each date's quality, and the variance report's trend is this view.
create or replace view reporting.data_quality_by_load as
with results as (
    select
        entity,
        as_of_date,
        count(*) as expectations,
        cast(sum(case when success then 1 else 0 end) as bigint) as expectations_passed,
        cast(sum(case when not success and severity = 'critical' then 1 else 0 end) as bigint) as critical_failures
    from quality.validation_results
    group by entity, as_of_date
),

quarantined as (
    select entity, as_of_date, count(*) as rows_quarantined
    from quality.quarantine
    group by entity, as_of_date
),

final as (
    select
        results.entity,
        results.as_of_date,
        results.expectations,
        results.expectations_passed,
        results.critical_failures,
        cast(results.expectations_passed as double precision) / results.expectations as quality_score,
        coalesce(quarantined.rows_quarantined, 0) as rows_quarantined
    from results
    left join quarantined
        on quarantined.entity = results.entity
        and quarantined.as_of_date = results.as_of_date
)

select * from final;

-- How customers moved between the last two snapshots, by RFM segment, value tier and lifecycle stage.
-- Each row: customers who were in from_group at the earlier snapshot and are in to_group at the later
-- one. Rows of one from_group add up to that group's count at the earlier snapshot.
create or replace view reporting.segment_migration as
with snapshot_dates as (
    select
        snapshot_date,
        dense_rank() over (order by snapshot_date desc) as recency_rank
    from (select distinct snapshot_date from marts.customer_rfm) as dates
),

earlier as (
    select rfm.*
    from marts.customer_rfm as rfm
    inner join snapshot_dates on snapshot_dates.snapshot_date = rfm.snapshot_date
    where snapshot_dates.recency_rank = 2
),

later as (
    select rfm.*
    from marts.customer_rfm as rfm
    inner join snapshot_dates on snapshot_dates.snapshot_date = rfm.snapshot_date
    where snapshot_dates.recency_rank = 1
),

pairs as (
    select
        earlier.snapshot_date as from_snapshot,
        later.snapshot_date as to_snapshot,
        earlier.rfm_segment as from_segment,
        later.rfm_segment as to_segment,
        earlier.value_tier as from_tier,
        later.value_tier as to_tier,
        earlier.lifecycle_stage as from_stage,
        later.lifecycle_stage as to_stage
    from earlier
    left join later on later.customer_id = earlier.customer_id
),

final as (
    select 'rfm_segment' as dimension, from_snapshot, max(to_snapshot) as to_snapshot,
        from_segment as from_group, coalesce(to_segment, 'not scored') as to_group, count(*) as customers
    from pairs group by from_snapshot, from_segment, coalesce(to_segment, 'not scored')
    union all
    select 'value_tier' as dimension, from_snapshot, max(to_snapshot) as to_snapshot,
        coalesce(from_tier, 'unknown') as from_group, coalesce(to_tier, 'not scored') as to_group, count(*) as customers
    from pairs group by from_snapshot, coalesce(from_tier, 'unknown'), coalesce(to_tier, 'not scored')
    union all
    select 'lifecycle_stage' as dimension, from_snapshot, max(to_snapshot) as to_snapshot,
        coalesce(from_stage, 'unknown') as from_group, coalesce(to_stage, 'not scored') as to_group,
        count(*) as customers
    from pairs group by from_snapshot, coalesce(from_stage, 'unknown'), coalesce(to_stage, 'not scored')
)

select * from final;

-- The latest churn warnings, with who the customer is and who owns the account.
create or replace view reporting.churn_warnings as
select
    warning.snapshot_date,
    warning.customer_id,
    'Customer ' || substr(md5(warning.customer_id), 1, 10) as customer_name,
    customer.region,
    customer.sales_owner,
    warning.value_tier,
    warning.churn_probability,
    warning.previous_probability,
    warning.clv_12m
from marts.churn_warnings as warning
left join core.dim_customer as customer on customer.customer_id = warning.customer_id
where warning.snapshot_date = (select max(snapshot_date) from marts.churn_warnings);

-- Every landed batch, for the people who operate the loads: where it came from, its window of updated_at,
-- what happened to each row read, whether the counts reconcile, new source columns, and the timings.
create or replace view reporting.ingestion_batches as
select
    entity,
    as_of_date,
    batch_id,
    run_id,
    source,
    coalesce(full_refresh, true) as full_refresh,
    watermark_before,
    watermark_after,
    rows_read,
    rows_loaded,
    rows_quarantined,
    rows_duplicate,
    rows_read = rows_loaded + rows_quarantined + rows_duplicate as reconciled,
    extra_columns,
    extract_seconds,
    validate_seconds,
    write_seconds,
    started_at,
    finished_at
from audit.load_batches;

-- Price / volume / mix of the latest report: why revenue moved from the month before to the last complete one.
create or replace view reporting.revenue_drivers as
select
    report_as_of,
    period_start,
    baseline_start,
    series_id,
    level,
    member,
    baseline_revenue,
    current_revenue,
    current_revenue - baseline_revenue as revenue_change,
    volume_effect,
    mix_effect,
    price_effect
from marts.fct_revenue_drivers
where report_as_of = (select max(report_as_of) from marts.fct_revenue_drivers);

-- The customer bridge of the latest report, step by step, in order.
create or replace view reporting.customer_bridge as
select report_as_of, period_start, baseline_start, series_id, level, member, step_order, step, customers, amount
from marts.fct_customer_bridge
where report_as_of = (select max(report_as_of) from marts.fct_customer_bridge);

-- The latest funnel forecast: expected bookings per level, member and month, beside the statistical
-- forecast and the combined one (salespulse.funnel documents the method).
create or replace view reporting.funnel_forecast as
with latest_run as (
    select run_id
    from marts.funnel_forecast
    order by as_of_date desc, created_at desc
    limit 1
)

select
    funnel.as_of_date,
    funnel.series_id,
    funnel.level,
    funnel.member,
    funnel.period_start,
    funnel.horizon,
    funnel.open_deals,
    funnel.pipeline_amount,
    funnel.expected_bookings,
    funnel.typical_bookings,
    funnel.statistical_forecast,
    funnel.combined_forecast
from marts.funnel_forecast as funnel
inner join latest_run on latest_run.run_id = funnel.run_id;

-- Stage conversion and win rates as learned at every run (how the funnel's conversion moves over time).
create or replace view reporting.funnel_stage_conversion as
select
    as_of_date,
    stage,
    open_deals,
    open_amount,
    deals_reached,
    deals_won,
    win_rate,
    conversion_to_next,
    rep_probability,
    probability_used,
    source
from marts.funnel_stage_rates;

-- Sales-cycle length at every run: days from created to closed, won deals and all closed deals.
create or replace view reporting.sales_cycle as
select as_of_date, outcome, deals, median_days, p25_days, p75_days, mean_days
from marts.funnel_cycle;

-- The funnel's expected bookings for a month, as first forecast one month ahead, against the amount
-- actually won in that month (deals closed won, by close month), for the total.
create or replace view reporting.funnel_accuracy as
with first_forecast as (
    select
        period_start,
        expected_bookings,
        pipeline_amount,
        as_of_date,
        row_number() over (partition by period_start order by as_of_date, created_at desc) as pick
    from marts.funnel_forecast
    where series_id = 'total:all' and horizon = 1
),

won as (
    select
        cast(date_trunc('month', closed_date) as date) as period_start,
        sum(amount) as won_amount,
        count(*) as deals_won
    from core.fct_opportunity
    where stage = 'closed_won'
    group by cast(date_trunc('month', closed_date) as date)
)

select
    first_forecast.period_start,
    first_forecast.as_of_date as forecast_as_of,
    first_forecast.pipeline_amount,
    first_forecast.expected_bookings,
    coalesce(won.won_amount, 0) as won_amount,
    coalesce(won.deals_won, 0) as deals_won,
    coalesce(won.won_amount, 0) - first_forecast.expected_bookings as variance
from first_forecast
left join won on won.period_start = first_forecast.period_start
where first_forecast.pick = 1;

-- Who each customer is, for the roles granted personal data (SALESPULSE_PII_ROLE): join on customer_id.
create or replace view reporting_pii.customers as
select
    customer_id,
    customer_name,
    email,
    phone,
    country_code,
    region,
    'Customer ' || substr(md5(customer_id), 1, 10) as pseudonym
from core.dim_customer;

-- The quarterly review: per quarter and series, the latest report's view of it (a closed quarter once its
-- last month is reported; the current quarter to date until then): actual vs the forecast made before the
-- quarter began vs target, and the orders / revenue-per-order split of the change on the quarter before.
create or replace view reporting.quarterly_review as
with ranked as (
    select
        fct_quarterly_review.*,
        row_number() over (partition by quarter_start, series_id order by period_start desc) as recency
    from marts.fct_quarterly_review
)

select
    quarter_start,
    quarter,
    status,
    months_closed,
    period_start as reported_through,
    series_id,
    level,
    member,
    forecast_as_of,
    actual,
    forecast,
    forecast_quarter,
    target,
    target_quarter,
    variance_abs,
    variance_pct,
    target_variance_abs,
    target_variance_pct,
    orders,
    previous_actual,
    previous_orders,
    orders_effect,
    order_value_effect,
    run_id,
    created_at
from ranked
where recency = 1;
