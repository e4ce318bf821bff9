-- Cleaned, conformed CRM entities: one row per business key, last update wins.

create table if not exists core.dim_customer (
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
    _loaded_at timestamp not null,
    primary key (customer_id)
);

create table if not exists core.dim_product (
    product_id varchar,
    product_name varchar,
    category varchar,
    list_price double precision,
    updated_at timestamp,
    _batch_id varchar not null,
    _run_id varchar not null,
    _loaded_at timestamp not null,
    primary key (product_id)
);

create table if not exists core.fct_sales_target (
    period_start date,
    level varchar,
    member varchar,
    target_amount double precision,
    currency varchar,
    updated_at timestamp,
    _batch_id varchar not null,
    _run_id varchar not null,
    _loaded_at timestamp not null,
    primary key (period_start, level, member)
);

create table if not exists core.fct_order (
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
    _loaded_at timestamp not null,
    primary key (order_id)
);

create table if not exists core.fct_order_line (
    order_id varchar,
    line_number bigint,
    product_id varchar,
    quantity bigint,
    unit_price double precision,
    discount_pct double precision,
    updated_at timestamp,
    _batch_id varchar not null,
    _run_id varchar not null,
    _loaded_at timestamp not null,
    primary key (order_id, line_number)
);

create table if not exists core.fct_interaction (
    interaction_id varchar,
    customer_id varchar,
    interaction_at timestamp,
    interaction_type varchar,
    outcome varchar,
    updated_at timestamp,
    _batch_id varchar not null,
    _run_id varchar not null,
    _loaded_at timestamp not null,
    primary key (interaction_id)
);

create table if not exists core.fct_opportunity (
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
    _loaded_at timestamp not null,
    primary key (opportunity_id)
);
-- The stage a closed deal was closed from (the funnel forecast learns stage win rates from it); added at
-- the end of tables created before it existed.
alter table core.fct_opportunity add column if not exists last_open_stage varchar;
alter table core.fct_order add column if not exists region varchar;
alter table core.fct_order add column if not exists sales_owner varchar;

