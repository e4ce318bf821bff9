# The image every Airflow service runs: the official Airflow 3.3.2 image plus SalesPulse's pinned stack.
FROM apache/airflow:3.3.2-python3.11

COPY --chown=airflow:0 requirements.txt constraints.txt /opt/airflow/project/
RUN pip install --no-cache-dir -r /opt/airflow/project/requirements.txt -c /opt/airflow/project/constraints.txt

# dags/, plugins/ and include/ are mounted by docker-compose; include/ and plugins/ hold the packages.
ENV PYTHONPATH=/opt/airflow/include:/opt/airflow/plugins
