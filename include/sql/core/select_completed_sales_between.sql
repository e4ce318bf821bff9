-- Completed order lines with a positive quantity placed in [:start, :end), with their attributes: what the
-- revenue drivers split into price, volume and mix.
select
    customer_id,
    product_id,
    region,
    segment,
    category,
    sales_owner,
    order_date,
    quantity,
    net_amount as revenue
from core.sales_lines
where status = 'completed' and quantity > 0 and order_date >= :start and order_date < :end;
