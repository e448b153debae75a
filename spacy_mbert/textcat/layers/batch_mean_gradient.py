"""``batch_mean_gradient``: identity forward; divides the gradient by the batch size.

spaCy's components backpropagate the gradient of a loss *summed* over the docs
of a batch; Hugging Face's trainers use the *mean* over the batch. Adam mostly
ignores a constant scale, but gradient clipping (``grad_clip = 1.0``) does not:
with summed gradients a batch of 32 docs has ~32x the gradient norm, so nearly
every step is clipped. Putting this layer at the end of a head makes its
gradient that of the mean loss, so clipping means what it means in HF.
"""

from typing import Callable, Tuple

from thinc.api import Model
from thinc.types import Floats2d

InT = Floats2d
OutT = Floats2d


def batch_mean_gradient() -> Model[InT, OutT]:
    """Pass scores through unchanged; scale their gradient by 1 / (number of rows)."""
    return Model("batch_mean_gradient", forward)


def forward(model: Model[InT, OutT], X: InT, is_train: bool) -> Tuple[OutT, Callable]:
    n_rows = max(X.shape[0], 1)

    def backprop(dY: OutT) -> InT:
        return dY / n_rows

    return X, backprop
