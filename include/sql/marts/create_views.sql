-- Revenue of completed orders per level of the sales hierarchy, member and period, monthly and weekly (weeks
-- start on Monday). The levels are the total and those in marts.series_levels; a level of several attributes
-- is their crossing, its member the attributes' values joined by ' | ' in the level's order
-- ("region*segment" -> "EMEA | Enterprise"). One definition, read by the forecasts (complete periods before
-- their as-of date), the variance step and the report.
create or replace view marts.sales_by_level as
with completed_lines as (
    select
        order_id,
        customer_id,
        order_date,
        net_amount,
        coalesce(region, 'unknown') as region,
        coalesce(segment, 'unknown') as segment,
        coalesce(category, 'unknown') as category,
        coalesce(sales_owner, 'unknown') as sales_owner
    from core.sales_lines
    where status = 'completed'
),

-- Lines of one order that share every attribute count once, their amounts added up: the same sums and
-- distinct counts from fewer rows.
sales as (
    select
        order_id,
        customer_id,
        order_date,
        region,
        segment,
        category,
        sales_owner,
        sum(net_amount) as net_amount
    from completed_lines
    group by order_id, customer_id, order_date, region, segment, category, sales_owner
),

-- A member is named once per combination of attribute values (a few hundred), not once per line.
combinations as (
    select distinct region, segment, category, sales_owner from sales
),

attribute_values as (
    select region, segment, category, sales_owner, 'region' as attribute, region as attribute_value
    from combinations
    union all
    select region, segment, category, sales_owner, 'segment' as attribute, segment as attribute_value
    from combinations
    union all
    select region, segment, category, sales_owner, 'category' as attribute, category as attribute_value
    from combinations
    union all
    select region, segment, category, sales_owner, 'sales_owner' as attribute, sales_owner as attribute_value
    from combinations
),

members as (
    select
        levels.level,
        attribute_values.region,
        attribute_values.segment,
        attribute_values.category,
        attribute_values.sales_owner,
        string_agg(attribute_values.attribute_value, ' | ' order by levels.position) as member
    from attribute_values
    inner join marts.series_levels as levels on levels.attribute = attribute_values.attribute
    group by
        levels.level,
        attribute_values.region,
        attribute_values.segment,
        attribute_values.category,
        attribute_values.sales_owner
),

by_level as (
    select 'total' as level, 'all' as member, order_id, customer_id, order_date, net_amount from sales
    union all
    select
        members.level,
        members.member,
        sales.order_id,
        sales.customer_id,
        sales.order_date,
        sales.net_amount
    from sales
    inner join members
        on
            members.region = sales.region
            and members.segment = sales.segment
            and members.category = sales.category
            and members.sales_owner = sales.sales_owner
),

by_period as (
    select
        'month' as grain,
        cast(date_trunc('month', order_date) as date) as period_start,
        level,
        member,
        order_id,
        customer_id,
        net_amount
    from by_level
    union all
    select
        'week' as grain,
        cast(date_trunc('week', order_date) as date) as period_start,
        level,
        member,
        order_id,
        customer_id,
        net_amount
    from by_level
),

final as (
    select
        grain,
        level || ':' || member as series_id,
        level,
        member,
        period_start,
        sum(net_amount) as revenue,
        count(distinct order_id) as orders,
        count(distinct customer_id) as customers
    from by_period
    group by grain, level, member, period_start
)

select * from final;
