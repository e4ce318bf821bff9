"""How long a fresh interpreter takes to parse each DAG file, against importing ``airflow.sdk`` alone.

    .venv/bin/python -m bench.dag_parse [--repeat 3]

Each file is run in a new process, as the dag-processor's parsing subprocesses do, with this repository's
``plugins/`` and ``include/`` on the path; the median of the repeats is printed with the peak memory and the
heavy libraries the parse loaded (none should be: they load inside the tasks).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("pandas", "great_expectations", "sklearn", "statsmodels", "scipy", "duckdb", "matplotlib")
PROBE = """
import json, resource, runpy, sys
sys.path[:0] = [{include!r}, {plugins!r}]
{body}
heavy = [m for m in {heavy!r} if m in sys.modules]
print(json.dumps({{"heavy": heavy, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def measure(body: str, repeat: int, env: dict[str, str]) -> dict[str, object]:
    code = PROBE.format(include=str(ROOT / "include"), plugins=str(ROOT / "plugins"), body=body, heavy=HEAVY)
    seconds, last = [], {}
    for _ in range(repeat):
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        seconds.append(time.perf_counter() - started)
        last = json.loads(out.stdout.strip().splitlines()[-1])
    return {"seconds": statistics.median(seconds), **last}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    env = {
        **os.environ,
        "AIRFLOW_HOME": tempfile.mkdtemp(prefix="salespulse-parse-"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    cases = {"import airflow.sdk (the floor)": "import airflow.sdk"}
    for path in sorted((ROOT / "dags").glob("*.py")):
        cases[f"dags/{path.name}"] = f"runpy.run_path({str(path)!r})"
    print(f"{'what':<34} {'seconds':>8} {'peak MB':>8}  heavy libraries loaded")
    for name, body in cases.items():
        result = measure(body, args.repeat, env)
        print(f"{name:<34} {result['seconds']:>8.2f} {result['rss_mb']:>8.0f}  {result['heavy'] or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
