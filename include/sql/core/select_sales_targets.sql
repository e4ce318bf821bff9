-- The sales targets of one month, per level and member.
select level, member, period_start, target_amount
from core.fct_sales_target
where period_start = :period;
