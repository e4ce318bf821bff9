-- One schema per warehouse layer; idempotent.
create schema if not exists raw;
create schema if not exists core;
create schema if not exists quality;
create schema if not exists audit;
create schema if not exists marts;
create schema if not exists reporting;
-- Personal data (names, emails, phone numbers) for the few roles that may see it; the reporting views
-- show a pseudonym instead (docs/security.md).
create schema if not exists reporting_pii;
