"""Long-horizon time-series forecasting: data and protocol (`data.py`), forecasters (`models.py`), the task
(`task.py`, `minrnn train forecast`); `minrnn forecast` (`commands/forecast.py`) applies a trained run to a CSV."""
