-- Levels below the total whose monthly series have one member only: that member's series is the total's
-- (a source with no segment or sales owner puts every customer under 'unknown'), so forecasting it again
-- would only repeat the total with its own charts and flags.
select level, min(member) as member
from marts.sales_series
where grain = 'month' and level <> 'total'
group by level
having count(distinct member) = 1
order by level;
