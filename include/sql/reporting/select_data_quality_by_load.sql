-- Each entity's quality score and quarantined rows per load date, up to the as-of date: the report's trend.
select
    entity,
    as_of_date as validation_date,
    quality_score,
    rows_quarantined
from reporting.data_quality_by_load
where as_of_date <= :as_of
order by validation_date;
