"""Small thinc layers used by the spacy-mbert task heads."""

from .batch_mean_gradient import batch_mean_gradient
from .cls_pool import POOLINGS, check_pooling, cls_pool, content_positions
from .sigmoid_bce import sigmoid_bce

__all__ = [
    "POOLINGS",
    "batch_mean_gradient",
    "check_pooling",
    "cls_pool",
    "content_positions",
    "sigmoid_bce",
]
