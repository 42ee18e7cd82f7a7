"""The server's Prometheus metrics, in a registry of their own (``GET /metrics``).

- ``neckkit_requests_total{route}``: requests per API route (``ask``, ``chat``), errors included;
- ``neckkit_errors_total{kind}``: error replies by kind (``bad_bitstream``, ``too_large``, ...);
- ``neckkit_batch_size``: requests per ``Answerer.answer_batch`` call (a histogram);
- ``neckkit_queue_length``: requests waiting for the batcher now (a gauge);
- ``neckkit_request_seconds{route}``: time from a request's arrival to its reply (a histogram).
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE_LATEST", "ServeMetrics"]

BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ServeMetrics:
    """One server's counters, gauges and histograms (several apps in one process do not share them)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("neckkit_requests", "Requests per API route.", ["route"], registry=self.registry)
        self.errors = Counter("neckkit_errors", "Error replies by kind.", ["kind"], registry=self.registry)
        self.batch_size = Histogram("neckkit_batch_size", "Requests answered together in one batch.",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.queue_length = Gauge("neckkit_queue_length", "Requests waiting to be batched.", registry=self.registry)
        self.request_seconds = Histogram("neckkit_request_seconds", "Seconds from a request's arrival to its reply.",
                                         ["route"], buckets=SECONDS_BUCKETS, registry=self.registry)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
