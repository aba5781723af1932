"""ASTRA-sim-compatible mode: read ASTRA-sim's own inputs and reproduce its analytical backend's results."""
