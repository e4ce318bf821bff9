"""The pipeline's steps: one module each, every step a function of (settings, as-of date, run id).

A step reads from the warehouse, calls pure transforms (which take and return frames), writes its
results, records itself in ``audit.step_runs`` and returns a small frozen summary. The DAG tasks
(``plugins/salespulse_airflow``), the demo and the benchmarks call these same functions. Each step is
idempotent for its as-of date (or run id, for forecast snapshots): a re-run replaces its own rows.

| module | steps |
| --- | --- |
| :mod:`~salespulse.steps.prepare` | ``prepare_warehouse`` |
| :mod:`~salespulse.steps.ingest` | ``ingest_entity`` |
| :mod:`~salespulse.steps.segments` | ``build_segments`` |
| :mod:`~salespulse.steps.forecast` | ``prepare_forecasts``, ``forecast_partition``, ``publish_forecasts`` |
| :mod:`~salespulse.steps.funnel` | ``build_funnel`` |
| :mod:`~salespulse.steps.variance` | ``build_variance`` |
| :mod:`~salespulse.steps.report` | ``render_variance_report`` |
"""
