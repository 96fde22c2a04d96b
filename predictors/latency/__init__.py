"""Latency: ONNX export and ONNX Runtime measurement, per-device latency tables, and the latency models
(table sum, calibrated table, layer-cost, few-shot transfer, learned) behind ``load_latency_model``."""

from predictors.latency.devices import list_devices, load_latency_model
from predictors.latency.table import LatencyTable, LatencyTableError, MissingLatencyKeyError, load_table

__all__ = ["LatencyTable", "LatencyTableError", "MissingLatencyKeyError", "list_devices", "load_latency_model",
           "load_table"]
