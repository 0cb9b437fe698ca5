"""`lineside bench`: latency per stage, backend and precision, accuracy, memory; tables, results.json, plots, report."""
