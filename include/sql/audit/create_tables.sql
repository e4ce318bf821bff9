-- One row per landed batch: what was read, what was loaded, what was held back, and why the counts add up.
-- watermark_before/after bound the batch's window of updated_at; the next batch starts from watermark_after,
-- so the watermark advances only with a batch that committed. extra_columns names source columns the model
-- does not know (kept in raw._extra).
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
    finished_at timestamp not null,
    full_refresh boolean,
    watermark_before timestamp,
    watermark_after timestamp,
    extra_columns varchar,
    extract_seconds double precision,
    validate_seconds double precision,
    write_seconds double precision
);

-- Warehouses created before incremental loads get the watermark and timing columns now.
alter table audit.load_batches add column if not exists full_refresh boolean;
alter table audit.load_batches add column if not exists watermark_before timestamp;
alter table audit.load_batches add column if not exists watermark_after timestamp;
alter table audit.load_batches add column if not exists extra_columns varchar;
alter table audit.load_batches add column if not exists extract_seconds double precision;
alter table audit.load_batches add column if not exists validate_seconds double precision;
alter table audit.load_batches add column if not exists write_seconds double precision;

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
