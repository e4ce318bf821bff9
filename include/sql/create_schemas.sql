-- One schema per warehouse layer; idempotent.
create schema if not exists raw;
create schema if not exists core;
create schema if not exists quality;
create schema if not exists audit;
create schema if not exists marts;
create schema if not exists reporting;
