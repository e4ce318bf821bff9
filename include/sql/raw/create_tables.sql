-- Landed rows exactly as the source exported them, plus load metadata. Append-only per batch.
-- _extra keeps, as JSON, any source column the model does not know yet (schema drift), so nothing is lost.

create table if not exists raw.customers (
    customer_id varchar,
    customer_name varchar,
    email varchar,
    phone varchar,
    country_code varchar,
    region varchar,
    channel varchar,
    industry varchar,
    segment varchar,
    sales_owner varchar,
    signup_date date,
    updated_at timestamp,
    _batch_id varchar not null,
    _run_id varchar not null,
    _source varchar not null,
    _loaded_at timestamp not null,
    _quarantined boolean not null,
    _extra varchar
);

create table if not exists raw.products (
    product_id varchar,
    product_name varchar,
    category varchar,
    list_price double precision,
    updated_at timestamp,
    _batch_id varchar not null,
    _run_id varchar not null,
    _source varchar not null,
    _loaded_at timestamp not null,
    _quarantined boolean not null,
    _extra varchar
);

create table if not exists raw.sales_targets (
    period_start date,
    level varchar,
    member varchar,
    target_amount double precision,
    currency varchar,
    updated_at timestamp,
    _batch_id varchar not null,
    _run_id varchar not null,
    _source varchar not null,
    _loaded_at timestamp not null,
    _quarantined boolean not null,
    _extra varchar
);

create table if not exists raw.orders (
    order_id varchar,
    customer_id varchar,
    order_date date,
    status varchar,
    channel varchar,
    region varchar,
    sales_owner varchar,
    currency varchar,
    updated_at timestamp,
    _batch_id varchar not null,
    _run_id varchar not null,
    _source varchar not null,
    _loaded_at timestamp not null,
    _quarantined boolean not null,
    _extra varchar
);

create table if not exists raw.order_lines (
    order_id varchar,
    line_number bigint,
    product_id varchar,
    quantity bigint,
    unit_price double precision,
    discount_pct double precision,
    updated_at timestamp,
    _batch_id varchar not null,
    _run_id varchar not null,
    _source varchar not null,
    _loaded_at timestamp not null,
    _quarantined boolean not null,
    _extra varchar
);

create table if not exists raw.interactions (
    interaction_id varchar,
    customer_id varchar,
    interaction_at timestamp,
    interaction_type varchar,
    outcome varchar,
    updated_at timestamp,
    _batch_id varchar not null,
    _run_id varchar not null,
    _source varchar not null,
    _loaded_at timestamp not null,
    _quarantined boolean not null,
    _extra varchar
);

create table if not exists raw.opportunities (
    opportunity_id varchar,
    customer_id varchar,
    owner varchar,
    stage varchar,
    last_open_stage varchar,
    amount double precision,
    probability double precision,
    currency varchar,
    created_date date,
    expected_close_date date,
    closed_date date,
    updated_at timestamp,
    _batch_id varchar not null,
    _run_id varchar not null,
    _source varchar not null,
    _loaded_at timestamp not null,
    _quarantined boolean not null,
    _extra varchar
);

-- Warehouses created before _extra existed get it now (appended, so column order stays the model's).
alter table raw.customers add column if not exists _extra varchar;
alter table raw.products add column if not exists _extra varchar;
alter table raw.sales_targets add column if not exists _extra varchar;
alter table raw.orders add column if not exists _extra varchar;
alter table raw.order_lines add column if not exists _extra varchar;
alter table raw.interactions add column if not exists _extra varchar;
alter table raw.opportunities add column if not exists _extra varchar;
-- The stage a closed deal was closed from (the funnel forecast learns stage win rates from it); added at
-- the end of tables created before it existed.
alter table raw.opportunities add column if not exists last_open_stage varchar;
alter table raw.orders add column if not exists region varchar;
alter table raw.orders add column if not exists sales_owner varchar;
