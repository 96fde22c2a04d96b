from predictors.latency import load_latency_model  # noqa: F401  (latency models: predictors/latency/)
