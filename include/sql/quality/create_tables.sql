-- Data-quality results, kept as history: one row per expectation per validation.
create table if not exists quality.validation_results (
    run_id varchar not null,
    batch_id varchar not null,
    entity varchar not null,
    suite_name varchar not null,
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
