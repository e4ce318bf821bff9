-- RFM scores and named segment per customer per snapshot date. History is kept: one snapshot per as-of date.
create table if not exists marts.customer_rfm (
    snapshot_date date not null,
    customer_id varchar not null,
    recency_days bigint not null,
    frequency bigint not null,
    monetary double precision not null,
    r_score integer not null,
    f_score integer not null,
    m_score integer not null,
    rfm_cell varchar not null,
    rfm_segment varchar not null,
    run_id varchar not null,
    created_at timestamp not null,
    primary key (snapshot_date, customer_id)
);

-- Value, behaviour, lifecycle and CLV per customer per snapshot (added after the first release:
-- "add column if not exists" migrates warehouses created before).
alter table marts.customer_rfm add column if not exists value_tier varchar;
alter table marts.customer_rfm add column if not exists purchase_class varchar;
alter table marts.customer_rfm add column if not exists lifecycle_stage varchar;
alter table marts.customer_rfm add column if not exists p_alive double precision;
alter table marts.customer_rfm add column if not exists expected_purchases_12m double precision;
alter table marts.customer_rfm add column if not exists clv_12m double precision;
alter table marts.customer_rfm add column if not exists cluster integer;

-- Behavioural clusters per snapshot, described by their feature means (log1p centroids keep numbering
-- stable from one snapshot to the next).
create table if not exists marts.customer_cluster_profile (
    snapshot_date date not null,
    cluster integer not null,
    customers bigint not null,
    recency_days double precision not null,
    frequency double precision not null,
    monetary double precision not null,
    avg_order_value double precision not null,
    tenure_days double precision not null,
    log_recency_days double precision not null,
    log_frequency double precision not null,
    log_monetary double precision not null,
    log_avg_order_value double precision not null,
    log_tenure_days double precision not null,
    k integer not null,
    silhouette double precision not null,
    run_id varchar not null,
    created_at timestamp not null,
    primary key (snapshot_date, cluster)
);

-- The levels of the sales hierarchy that have series besides the total: one row per level and attribute,
-- written from SALESPULSE_FORECAST_LEVELS. A level of two attributes (region*segment) is their crossing.
create table if not exists marts.series_levels (
    level varchar not null,
    attribute varchar not null,
    position integer not null,
    primary key (level, attribute)
);

-- Revenue per level, member and period as one long table (series_id, period_start, revenue), monthly and
-- weekly, with periods without sales filled with zero and the incomplete current period left out. Rebuilt
-- from core on every forecast run.
create table if not exists marts.sales_series (
    grain varchar not null,
    series_id varchar not null,
    level varchar not null,
    member varchar not null,
    period_start date not null,
    revenue double precision not null,
    orders bigint not null,
    customers bigint not null,
    as_of_date date not null,
    run_id varchar not null,
    primary key (grain, series_id, period_start)
);

-- Every forecast ever made, with the date it was made and the model that made it. Never overwritten.
create table if not exists marts.forecast_snapshot (
    as_of_date date not null,
    run_id varchar not null,
    series_id varchar not null,
    level varchar not null,
    member varchar not null,
    period_start date not null,
    horizon integer not null,
    model varchar not null,
    forecast double precision not null,
    lo80 double precision not null,
    hi80 double precision not null,
    lo95 double precision not null,
    hi95 double precision not null,
    created_at timestamp not null,
    primary key (run_id, series_id, period_start)
);

-- The model's own forecast before reconciliation, and how the levels were made to add up (added later).
alter table marts.forecast_snapshot add column if not exists base_forecast double precision;
alter table marts.forecast_snapshot add column if not exists reconciliation varchar;

-- Which partition each monthly series is forecast in, per run (written by prepare_series, read by the
-- mapped forecast tasks, so each reads only its own series).
create table if not exists marts.forecast_partitions (
    run_id varchar not null,
    series_id varchar not null,
    partition_no integer not null,
    primary key (run_id, series_id)
);

-- Base forecasts of one run, one partition of series per mapped task, before they are reconciled together
-- and published to forecast_snapshot. Emptied for the run once it is published.
create table if not exists marts.forecast_staging (
    run_id varchar not null,
    partition_no integer not null,
    series_id varchar not null,
    level varchar not null,
    member varchar not null,
    period_start date not null,
    horizon integer not null,
    model varchar not null,
    forecast double precision not null,
    lo80 double precision not null,
    hi80 double precision not null,
    lo95 double precision not null,
    hi95 double precision not null,
    created_at timestamp not null,
    primary key (run_id, series_id, period_start)
);

-- Rolling-origin backtest errors of every candidate model, and which one was selected.
create table if not exists marts.forecast_backtest (
    as_of_date date not null,
    run_id varchar not null,
    series_id varchar not null,
    model varchar not null,
    folds integer not null,
    mase double precision,
    wape double precision,
    selected boolean not null,
    created_at timestamp not null,
    primary key (run_id, series_id, model)
);

-- Actual vs forecast (as first made `horizon` months ahead) vs target, per reported month, series and lead,
-- with rolling accuracy and the flags raised. Sign convention: error = actual - forecast, so a positive
-- variance or bias means sales beat the forecast. Re-running a month replaces that month's rows only.
create table if not exists marts.fct_variance (
    period_start date not null,
    series_id varchar not null,
    level varchar not null,
    member varchar not null,
    horizon integer not null,
    report_as_of date not null,
    forecast_as_of date not null,
    model varchar not null,
    actual double precision not null,
    forecast double precision not null,
    lo80 double precision not null,
    hi80 double precision not null,
    lo95 double precision not null,
    hi95 double precision not null,
    target double precision,
    variance_abs double precision not null,
    variance_pct double precision,
    target_variance_abs double precision,
    target_variance_pct double precision,
    within_interval_80 boolean not null,
    within_interval_95 boolean not null,
    window_periods integer not null,
    bias double precision,
    wape double precision,
    mase double precision,
    tracking_signal double precision,
    tracking_z double precision,
    flag_interval boolean not null,
    flag_tracking_signal boolean not null,
    material boolean not null,
    flag_forecast boolean not null,
    flag_target boolean not null,
    flagged boolean not null,
    flag_reasons varchar,
    materiality_threshold double precision not null,
    tracking_z_threshold double precision not null,
    target_pct_threshold double precision not null,
    run_id varchar not null,
    created_at timestamp not null,
    primary key (period_start, series_id, horizon)
);

alter table marts.customer_rfm add column if not exists churn_probability double precision;

-- How the churn model did on its later holdout period, next to the BG/NBD baseline (its chance of no purchase in the window).
create table if not exists marts.churn_model_evaluation (
    snapshot_date date not null,
    model varchar not null,
    roc_auc double precision not null,
    pr_auc double precision not null,
    brier double precision not null,
    customers bigint not null,
    churn_rate double precision not null,
    run_id varchar not null,
    created_at timestamp not null,
    primary key (snapshot_date, model)
);

-- High-value customers whose churn risk crossed the threshold since the previous snapshot.
create table if not exists marts.churn_warnings (
    snapshot_date date not null,
    customer_id varchar not null,
    value_tier varchar not null,
    churn_probability double precision not null,
    previous_probability double precision,
    clv_12m double precision,
    run_id varchar not null,
    created_at timestamp not null,
    primary key (snapshot_date, customer_id)
);

-- Why revenue moved from the previous month to the report's last complete month, per level and member:
-- price / volume / mix over products (volume_effect + mix_effect + price_effect = current - baseline).
create table if not exists marts.fct_revenue_drivers (
    report_as_of date not null,
    period_start date not null,
    baseline_start date not null,
    series_id varchar not null,
    level varchar not null,
    member varchar not null,
    baseline_revenue double precision not null,
    current_revenue double precision not null,
    volume_effect double precision not null,
    mix_effect double precision not null,
    price_effect double precision not null,
    run_id varchar not null,
    created_at timestamp not null,
    primary key (report_as_of, series_id)
);

-- The customer bridge for the same two months: baseline + new - lost + returning change = current.
create table if not exists marts.fct_customer_bridge (
    report_as_of date not null,
    period_start date not null,
    baseline_start date not null,
    series_id varchar not null,
    level varchar not null,
    member varchar not null,
    step_order integer not null,
    step varchar not null,
    customers bigint not null,
    amount double precision not null,
    run_id varchar not null,
    created_at timestamp not null,
    primary key (report_as_of, series_id, step)
);

-- The funnel forecast of every run (salespulse.funnel): expected bookings from the deals open on the as-of
-- date per level, member and month, with the statistical forecast and the two combined. Never overwritten.
create table if not exists marts.funnel_forecast (
    as_of_date date not null,
    run_id varchar not null,
    series_id varchar not null,
    level varchar not null,
    member varchar not null,
    period_start date not null,
    horizon integer not null,
    open_deals bigint not null,
    pipeline_amount double precision not null,
    expected_bookings double precision not null,
    typical_bookings double precision not null,
    statistical_forecast double precision,
    combined_forecast double precision,
    created_at timestamp not null,
    primary key (run_id, series_id, period_start)
);

-- Stage win rates and conversion learned from the deals closed before each run's as-of date.
create table if not exists marts.funnel_stage_rates (
    as_of_date date not null,
    run_id varchar not null,
    stage varchar not null,
    open_deals bigint not null,
    open_amount double precision not null,
    deals_reached bigint not null,
    deals_won bigint not null,
    win_rate double precision,
    conversion_to_next double precision,
    rep_probability double precision,
    probability_used double precision,
    source varchar not null,
    created_at timestamp not null,
    primary key (run_id, stage)
);

-- Sales-cycle length (days from created to closed) of the deals closed before each run's as-of date.
create table if not exists marts.funnel_cycle (
    as_of_date date not null,
    run_id varchar not null,
    outcome varchar not null,
    deals bigint not null,
    median_days double precision,
    p25_days double precision,
    p75_days double precision,
    mean_days double precision,
    created_at timestamp not null,
    primary key (run_id, outcome)
);

-- The quarterly review of each report month (salespulse.quarterly): its own quarter to date and the one
-- before, closed; per series, actual vs the forecast made before the quarter began vs target, and the
-- orders / revenue-per-order split of the change against the same months of the quarter before. A re-run
-- of the month replaces its rows; reporting.quarterly_review shows each quarter's latest.
create table if not exists marts.fct_quarterly_review (
    period_start date not null,
    quarter_start date not null,
    quarter varchar not null,
    status varchar not null,
    months_closed integer not null,
    series_id varchar not null,
    level varchar not null,
    member varchar not null,
    forecast_as_of date not null,
    actual double precision not null,
    forecast double precision,
    forecast_quarter double precision,
    target double precision,
    target_quarter double precision,
    variance_abs double precision,
    variance_pct double precision,
    target_variance_abs double precision,
    target_variance_pct double precision,
    orders bigint not null,
    previous_actual double precision not null,
    previous_orders bigint not null,
    orders_effect double precision not null,
    order_value_effect double precision not null,
    report_as_of date not null,
    run_id varchar not null,
    created_at timestamp not null,
    primary key (period_start, quarter_start, series_id)
);
