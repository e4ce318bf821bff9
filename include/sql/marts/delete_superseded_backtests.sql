-- The backtests other runs made for the as-of date: a re-run of the date supersedes them.
delete from marts.forecast_backtest
where as_of_date = :as_of_date and run_id <> :run_id;
