"""Prometheus metrics (``GET /metrics``).

Counters and histograms live in each worker; with several workers ``kiroku serve`` sets
``PROMETHEUS_MULTIPROC_DIR`` so a scrape of any worker sums them all. Tree size, checkpoint age
and projection lag are read from the database at scrape time, so they are the same whichever
worker answers. No label ever carries a resident, a request id or any other personal value.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

APPENDS = Counter("kiroku_appends_total", "Statements appended to the log", ["mode"])
REJECTIONS = Counter("kiroku_rejections_total", "Statements refused, by reason (problem code)",
                     ["reason"])
REQUEST_SECONDS = Histogram(
    "kiroku_http_request_duration_seconds", "HTTP request latency by route template",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
COMMIT_SECONDS = Histogram("kiroku_commit_duration_seconds", "One append transaction",
                           buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                    2.5, 5))
GROUP_SIZE = Histogram("kiroku_group_commit_size", "Single statements appended per transaction",
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))


class LogCollector(Collector):
    """Gauges computed from the database when scraped."""

    def __init__(self, ledger: Any, status: Any) -> None:
        self.ledger = ledger
        self.status = status

    def collect(self) -> Iterator[GaugeMetricFamily]:
        size = self.ledger.tree_size()
        yield GaugeMetricFamily("kiroku_tree_size", "Entries in the log", value=size)
        latest = self.ledger.latest_checkpoint()
        yield GaugeMetricFamily("kiroku_checkpoint_size", "Tree size of the latest checkpoint",
                                value=latest.size if latest else 0)
        if self.status is not None:
            lag = GaugeMetricFamily("kiroku_projection_lag_entries",
                                    "Log entries a projection has not applied yet",
                                    labels=["projection"])
            for row in self.status(self.ledger):
                lag.add_metric([str(row.get("name", "?"))], float(row.get("lag", 0) or 0))
            yield lag


def render(ledger: Any, status: Any) -> tuple[bytes, str]:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY

        for collector in (APPENDS, REJECTIONS, REQUEST_SECONDS, COMMIT_SECONDS, GROUP_SIZE):
            registry.register(collector)
        del REGISTRY
    registry.register(LogCollector(ledger, status))
    return generate_latest(registry), CONTENT_TYPE_LATEST
