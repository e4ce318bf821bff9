-- The monthly series the forecast step forecasts (one per level member, and the total).
select distinct series_id
from marts.sales_series
where grain = 'month';
