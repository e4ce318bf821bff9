-- The deals created before the as-of date, as core knows them now (the funnel forecast rebuilds each
-- deal's state on the date from these columns).
select
    opportunity_id,
    customer_id,
    stage,
    last_open_stage,
    amount,
    probability,
    created_date,
    expected_close_date,
    closed_date
from core.fct_opportunity
where created_date < :as_of;
