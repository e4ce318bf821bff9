-- Data-quality results, kept as history: one row per expectation per validation.
create table if not exists quality.validation_results (
    run_id varchar not null,
    batch_id varchar not null,
    entity varchar not null,
    suite_name varchar not null,
    rule_name varchar not null,
    expectation_type varchar not null,
    column_name varchar,
    severity varchar not null,
    success boolean not null,
    element_count bigint,
    unexpected_count bigint,
    unexpected_percent double precision,
    observed_value varchar,
    as_of_date date not null,
    validated_at timestamp not null
);

-- Rows held back by a critical row-level rule, with the rule(s) they broke and the original row as JSON.
create table if not exists quality.quarantine (
    run_id varchar not null,
    batch_id varchar not null,
    entity varchar not null,
    record_key varchar,
    failed_rules varchar not null,
    original_row varchar not null,
    as_of_date date not null,
    quarantined_at timestamp not null
);

-- One view per entity over the quarantine, for people who look at one entity's held-back rows.
-- The table itself is shared: its original_row column keeps each row whole as JSON, whatever the
-- source's columns were, so it survives schema drift.
create or replace view quality.quarantine_customers as
select run_id, batch_id, record_key, failed_rules, original_row, as_of_date, quarantined_at
from quality.quarantine where entity = 'customers';

create or replace view quality.quarantine_products as
select run_id, batch_id, record_key, failed_rules, original_row, as_of_date, quarantined_at
from quality.quarantine where entity = 'products';

create or replace view quality.quarantine_sales_targets as
select run_id, batch_id, record_key, failed_rules, original_row, as_of_date, quarantined_at
from quality.quarantine where entity = 'sales_targets';

create or replace view quality.quarantine_orders as
select run_id, batch_id, record_key, failed_rules, original_row, as_of_date, quarantined_at
from quality.quarantine where entity = 'orders';

create or replace view quality.quarantine_order_lines as
select run_id, batch_id, record_key, failed_rules, original_row, as_of_date, quarantined_at
from quality.quarantine where entity = 'order_lines';

create or replace view quality.quarantine_interactions as
select run_id, batch_id, record_key, failed_rules, original_row, as_of_date, quarantined_at
from quality.quarantine where entity = 'interactions';

create or replace view quality.quarantine_opportunities as
select run_id, batch_id, record_key, failed_rules, original_row, as_of_date, quarantined_at
from quality.quarantine where entity = 'opportunities';
