-- One row per landed batch: what was read, what was loaded, what was held back, and why the counts add up.
create table if not exists audit.load_batches (
    batch_id varchar primary key,
    run_id varchar not null,
    entity varchar not null,
    source varchar not null,
    as_of_date date not null,
    rows_read bigint not null,
    rows_duplicate bigint not null,
    rows_quarantined bigint not null,
    rows_loaded bigint not null,
    started_at timestamp not null,
    finished_at timestamp not null
);

-- One row per pipeline step per run: the trail from any output table back to the run that wrote it.
create table if not exists audit.step_runs (
    run_id varchar not null,
    step varchar not null,
    as_of_date date not null,
    rows_written bigint not null,
    detail varchar,
    started_at timestamp not null,
    finished_at timestamp not null
);
