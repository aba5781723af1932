"""Accuracy evaluation: measured ground truth, published figures, metrics and reports."""
