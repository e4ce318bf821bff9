# The image every Airflow service runs: the official Airflow 3.3.2 image plus SalesPulse's pinned stack and
# SalesPulse itself, installed as a package: its SQL, expectation suites and mappings are package data.
FROM apache/airflow:3.3.2-python3.11

COPY --chown=airflow:0 requirements.txt constraints.txt /opt/airflow/project/
RUN pip install --no-cache-dir -r /opt/airflow/project/requirements.txt -c /opt/airflow/project/constraints.txt

COPY --chown=airflow:0 pyproject.toml README.md /opt/airflow/project/
COPY --chown=airflow:0 include /opt/airflow/project/include
COPY --chown=airflow:0 plugins /opt/airflow/project/plugins
# PIP_CONSTRAINT pins the build backend (setuptools) too.
RUN PIP_CONSTRAINT=/opt/airflow/project/constraints.txt pip install --no-cache-dir --no-deps /opt/airflow/project
# dags/ and plugins/ are mounted by docker-compose (Airflow reads DAG files and plugins from folders).
