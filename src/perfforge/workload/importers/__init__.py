"""Importers: HuggingFace config.json and PyTorch modules into perfforge workloads."""
