"""Deep anomaly detectors with a scikit-learn interface."""

from .auxiliary import FeaturePermutation, UniformBox
from .detectors.contrastive_flow import ContrastiveFlowDetector
from .detectors.deep_svdd import DeepSVDDDetector
from .detectors.flow import FlowDetector
from .detectors.invertible_one_class import InvertibleOneClassDetector
from .detectors.likelihood_ratio import LikelihoodRatioDetector

__version__ = "0.1.0"

__all__ = [
    "ContrastiveFlowDetector",
    "DeepSVDDDetector",
    "FeaturePermutation",
    "FlowDetector",
    "InvertibleOneClassDetector",
    "LikelihoodRatioDetector",
    "UniformBox",
    "__version__",
]
