-- Monthly revenue per series up to and including the reported month (months with no sales are absent).
select series_id, level, member, period_start, revenue
from marts.sales_by_level
where grain = 'month' and period_start <= :period;
