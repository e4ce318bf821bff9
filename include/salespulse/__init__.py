"""SalesPulse: customer data to segments, forecasts and variance reports.

This package holds all business logic. It imports nothing from Airflow, so every
function here runs, and is tested, without a scheduler.
"""

__version__ = "0.1.0"
