"""The server's Prometheus metrics, in a registry of their own (``GET /metrics``).

- ``neckkit_requests_total{route}``: requests per API route (``ask``, ``chat``), errors included;
- ``neckkit_errors_total{kind}``: error replies by kind (``bad_bitstream``, ``damaged_bitstream``,
  ``too_large``, ``body_timeout``, ``busy``, ...);
- ``neckkit_batch_size``: requests per ``Answerer.answer_batch`` call (a histogram);
- ``neckkit_queue_length``: requests waiting for the batcher now (a gauge);
- ``neckkit_uploads_in_progress``: request bodies being read now (a gauge);
- ``neckkit_request_seconds{route}``: time from a request's arrival to its reply (a histogram);
- the decode workers (:class:`~neckkit.serving.decode_pool.DecodePool`; zeros when decoding in-process):
  ``neckkit_decode_workers`` (live now), ``neckkit_decode_worker_crashes_total`` (died while decoding),
  ``neckkit_decode_timeouts_total`` (killed for taking too long), ``neckkit_decode_worker_restarts_total``
  (replacements started), ``neckkit_decode_worker_start_failures_total`` (replacements that failed to start).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from neckkit.serving.decode_pool import DecodeStats

__all__ = ["CONTENT_TYPE_LATEST", "ServeMetrics"]

BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
DECODE_COUNTERS = {  # DecodeStats field: (metric name without _total, help)
    "crashes": ("neckkit_decode_worker_crashes", "Decode workers that died while decoding a request's bitstream."),
    "timeouts": ("neckkit_decode_timeouts", "Decode workers killed for taking longer than the decode timeout."),
    "restarts": ("neckkit_decode_worker_restarts", "Replacement decode workers started."),
    "start_failures": ("neckkit_decode_worker_start_failures", "Replacement decode workers that failed to start."),
}


class _DecodeCollector(Collector):
    """Reads the decode pool's counters when /metrics is scraped (the pool counts them itself)."""

    def __init__(self, stats: Callable[[], DecodeStats | None]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self.stats()
        yield GaugeMetricFamily("neckkit_decode_workers", "Live decode worker processes.",
                                value=stats.workers if stats is not None else 0)
        for field, (name, documentation) in DECODE_COUNTERS.items():
            yield CounterMetricFamily(name, documentation, value=getattr(stats, field) if stats is not None else 0)


class ServeMetrics:
    """One server's counters, gauges and histograms (several apps in one process do not share them)."""

    def __init__(self, decode_stats: Callable[[], DecodeStats | None] = lambda: None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("neckkit_requests", "Requests per API route.", ["route"], registry=self.registry)
        self.errors = Counter("neckkit_errors", "Error replies by kind.", ["kind"], registry=self.registry)
        self.batch_size = Histogram("neckkit_batch_size", "Requests answered together in one batch.",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.queue_length = Gauge("neckkit_queue_length", "Requests waiting to be batched.", registry=self.registry)
        self.uploads = Gauge("neckkit_uploads_in_progress", "Request bodies being read now.", registry=self.registry)
        self.request_seconds = Histogram("neckkit_request_seconds", "Seconds from a request's arrival to its reply.",
                                         ["route"], buckets=SECONDS_BUCKETS, registry=self.registry)
        self.registry.register(_DecodeCollector(decode_stats))

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
