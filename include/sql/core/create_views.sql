-- Order lines with their net amount: the one definition of a line's revenue (salespulse.rules.net_amount
-- is the same rule for batches not loaded yet).
create or replace view core.order_line_amounts as
select
    line.order_id,
    line.line_number,
    line.product_id,
    line.quantity,
    line.unit_price,
    line.quantity * line.unit_price * (1 - coalesce(line.discount_pct, 0)) as net_amount
from core.fct_order_line as line;

-- Order lines with their customer and product attributes and the net amount: the sales fact every mart reads.
create or replace view core.sales_lines as
with lines as (
    select * from core.order_line_amounts
),

final as (
    select
        orders.order_id,
        orders.customer_id,
        orders.order_date,
        orders.status,
        -- Where and by whom the sale was made: the order's own values when the source has them there.
        coalesce(orders.region, customer.region) as region,
        customer.segment,
        coalesce(orders.sales_owner, customer.sales_owner) as sales_owner,
        product.category,
        lines.product_id,
        lines.line_number,
        lines.quantity,
        lines.unit_price,
        lines.net_amount
    from lines
    inner join core.fct_order as orders on orders.order_id = lines.order_id
    inner join core.dim_customer as customer on customer.customer_id = orders.customer_id
    inner join core.dim_product as product on product.product_id = lines.product_id
)

select * from final;
