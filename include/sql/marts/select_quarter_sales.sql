-- Monthly revenue and orders per series from :start to :period (a month with no row sold nothing).
select series_id, level, member, period_start, revenue, orders
from marts.sales_by_level
where grain = 'month' and period_start between :start and :period;
