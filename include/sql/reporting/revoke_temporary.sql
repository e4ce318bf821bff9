-- PostgreSQL only: PUBLIC may create temporary tables and functions in every database by default. Keep
-- that right for the pipeline's own user (its reads use a temporary table) and take it from everyone
-- else, so a BI role can create nothing. One line: the DO block's own semicolons must not split it.
do $$ begin execute format('grant temporary on database %I to %I', current_database(), current_user); execute format('revoke temporary on database %I from public', current_database()); end $$;
