"""Synthetic verifiable reasoning tasks (datasets with exact answers and SFT scratchpads)."""
