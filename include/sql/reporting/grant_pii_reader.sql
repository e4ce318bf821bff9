-- PostgreSQL only: the role ($role) that may see personal data reads reporting_pii (names, emails, phone
-- numbers, by customer_id) and nothing else; BI users who need names are granted it beside the reader.
grant usage on schema reporting_pii to $role;
grant select on all tables in schema reporting_pii to $role;
alter default privileges in schema reporting_pii grant select on tables to $role;
