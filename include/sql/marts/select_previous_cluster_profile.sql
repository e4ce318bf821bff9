-- The cluster centroids of the latest segments snapshot before the as-of date (keeps cluster numbers stable).
with previous as (
    select max(snapshot_date) as snapshot_date
    from marts.customer_cluster_profile
    where snapshot_date < :as_of
)

select profile.*
from marts.customer_cluster_profile as profile
inner join previous on previous.snapshot_date = profile.snapshot_date;
