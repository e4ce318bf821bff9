-- Each customer's churn probability in the latest segments snapshot before the as-of date: who newly
-- crossed the warning threshold is judged against it.
with previous as (
    select max(snapshot_date) as snapshot_date
    from marts.customer_rfm
    where snapshot_date < :as_of
)

select rfm.customer_id, rfm.churn_probability
from marts.customer_rfm as rfm
inner join previous on previous.snapshot_date = rfm.snapshot_date;
