"""statsforecast's AutoETS or AutoTheta on a long table of series: the outside references of the forecasting
benchmark.

Runs in the benchmark's own virtualenv (``make bench-reference``, pinned by
``bench/requirements-reference.txt``), because statsforecast pins pandas < 3 and SalesPulse runs on
pandas 3. It imports nothing from SalesPulse.

    .venv-bench/bin/python bench/reference_models.py IN.parquet OUT.parquet --horizon 6 --season-length 12 \
        --model AutoETS

IN has ``series_id, period_start, revenue``; OUT gets ``series_id, period_start, forecast, lo80, hi80, lo95,
hi95``. The last line on stdout is JSON with the fitting seconds.
"""

from __future__ import annotations

import argparse
import json
import time

import pandas as pd
from statsforecast import StatsForecast
from statsforecast.models import AutoETS, AutoTheta


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--horizon", type=int, default=6)
    parser.add_argument("--season-length", type=int, default=12)
    parser.add_argument("--freq", default="MS")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--model", choices=("AutoETS", "AutoTheta"), default="AutoETS")
    args = parser.parse_args()
    history = pd.read_parquet(args.source).rename(
        columns={"series_id": "unique_id", "period_start": "ds", "revenue": "y"}
    )
    model = {"AutoETS": AutoETS, "AutoTheta": AutoTheta}[args.model](season_length=args.season_length)
    started = time.perf_counter()
    engine = StatsForecast(models=[model], freq=args.freq, n_jobs=args.jobs)
    result = engine.forecast(df=history, h=args.horizon, level=[80, 95])
    seconds = time.perf_counter() - started
    result = result.reset_index() if "unique_id" not in result.columns else result
    out = pd.DataFrame(
        {
            "series_id": result["unique_id"].astype(str),
            "period_start": pd.to_datetime(result["ds"]),
            "forecast": result[args.model],
            "lo80": result[f"{args.model}-lo-80"],
            "hi80": result[f"{args.model}-hi-80"],
            "lo95": result[f"{args.model}-lo-95"],
            "hi95": result[f"{args.model}-hi-95"],
        }
    )
    out.to_parquet(args.target, index=False)
    print(json.dumps({"seconds": seconds, "series": int(out["series_id"].nunique())}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
