-- The sales targets of the months from :start to :end, per level and member.
select level, member, period_start, target_amount
from core.fct_sales_target
where period_start between :start and :end;
