-- Order lines with their customer and product attributes and the net amount: the sales fact every mart reads.
create or replace view core.sales_lines as
with lines as (
    select
        line.order_id,
        line.line_number,
        line.product_id,
        line.quantity,
        line.unit_price,
        line.quantity * line.unit_price * (1 - coalesce(line.discount_pct, 0)) as net_amount
    from core.fct_order_line as line
),

final as (
    select
        orders.order_id,
        orders.customer_id,
        orders.order_date,
        orders.status,
        customer.region,
        customer.segment,
        customer.sales_owner,
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

-- Monthly revenue of completed orders per level of the sales hierarchy: the total, each region, customer
-- segment, product category and sales owner. One definition, read by the forecasts (complete months before
-- their as-of date) and the variance report (the month it reports and the history before it).
create or replace view core.sales_by_level_month as
with sales as (
    select
        order_id,
        customer_id,
        cast(date_trunc('month', order_date) as date) as period_start,
        coalesce(region, 'unknown') as region,
        coalesce(segment, 'unknown') as segment,
        coalesce(category, 'unknown') as category,
        coalesce(sales_owner, 'unknown') as sales_owner,
        net_amount
    from core.sales_lines
    where status = 'completed'
),

by_level as (
    select 'total' as level, 'all' as member, period_start, order_id, customer_id, net_amount from sales
    union all
    select 'region' as level, region as member, period_start, order_id, customer_id, net_amount from sales
    union all
    select 'segment' as level, segment as member, period_start, order_id, customer_id, net_amount from sales
    union all
    select 'category' as level, category as member, period_start, order_id, customer_id, net_amount from sales
    union all
    select 'sales_owner' as level, sales_owner as member, period_start, order_id, customer_id, net_amount
    from sales
),

final as (
    select
        level || ':' || member as series_id,
        level,
        member,
        period_start,
        sum(net_amount) as revenue,
        count(distinct order_id) as orders,
        count(distinct customer_id) as customers
    from by_level
    group by level, member, period_start
)

select * from final;
