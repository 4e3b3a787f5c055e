"""Shared by the benchmarks: printing a report as aligned text or one JSON object."""

from __future__ import annotations

import json


def print_report(report: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report))
        return
    width = max(map(len, report))
    for key, value in report.items():
        print(f"{key:<{width}}  {value}")
