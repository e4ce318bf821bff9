-- Every snapshot row for the months from :start to :period made before the as-of date: the variance step
-- picks the first forecast made at each lead.
select *
from marts.forecast_snapshot
where period_start between :start and :period and as_of_date < :as_of;
