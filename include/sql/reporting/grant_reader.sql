-- PostgreSQL only: the read-only reporting role ($role) may read the reporting schema and nothing else.
-- Views run with their owner's rights, so no grant on raw, core, quality, audit or marts is needed or given.
grant usage on schema reporting to $role;
grant select on all tables in schema reporting to $role;
alter default privileges in schema reporting grant select on tables to $role;
