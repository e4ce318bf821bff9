"""Airflow glue shared by SalesPulse's DAGs: assets, run context, defaults, callbacks, local runner.

Only this package and ``dags/`` import Airflow; the business logic in ``salespulse`` does not.
"""
