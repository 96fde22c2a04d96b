from predictors.accuracy import load_predictor  # noqa: F401  (accuracy predictors: predictors/accuracy/)
from predictors.latency import load_latency_model  # noqa: F401  (latency models: predictors/latency/)
