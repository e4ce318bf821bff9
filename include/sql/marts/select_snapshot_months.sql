-- One snapshot's forecasts (as of :as_of_date) for the months from :start to :end.
select series_id, level, member, period_start, as_of_date, forecast
from marts.forecast_snapshot
where as_of_date = :as_of_date and period_start between :start and :end;
