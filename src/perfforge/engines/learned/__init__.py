"""Learned GPU kernel latency model: boosted trees and a NeuSight-style MLP on tile/wave and GPU features,
blended per op class and bounded by the roofline.

Importing this package registers the ``learned`` backend of the analytical engine. Prediction needs numpy
only; training (``perfforge learn train``) needs scikit-learn.
"""

from perfforge.engines.learned.backend import LearnedTimer
from perfforge.engines.learned.model import LearnedKernelModel, OpPredictions, WeightsMissingError, load_model

__all__ = ["LearnedKernelModel", "LearnedTimer", "OpPredictions", "WeightsMissingError", "load_model"]
