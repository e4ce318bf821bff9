-- The data dictionary of the reporting schema, refilled from include/sql/reporting/dictionary.yaml on
-- every set-up (salespulse.dictionary.apply_dictionary).
create table if not exists reporting.data_dictionary (
    view_name varchar not null,
    ordinal integer not null,
    column_name varchar not null,
    data_type varchar not null,
    description varchar not null
);
