-- The order lines placed before the as-of date, every status: what the segments step scores customers on.
select customer_id, order_id, order_date, status, net_amount
from core.sales_lines
where order_date < :as_of;
