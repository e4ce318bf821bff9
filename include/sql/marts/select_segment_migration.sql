-- Customers per (earlier RFM segment, later RFM segment) between two snapshots; a customer missing from the
-- later one is 'not scored'.
select
    earlier.rfm_segment as from_group,
    coalesce(later.rfm_segment, 'not scored') as to_group,
    count(*) as customers
from marts.customer_rfm as earlier
left join marts.customer_rfm as later
    on later.customer_id = earlier.customer_id and later.snapshot_date = :later
where earlier.snapshot_date = :earlier
group by 1, 2;
