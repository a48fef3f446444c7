"""Market data reads: bars, the symbol list and the pipeline status."""
