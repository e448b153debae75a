"""``sigmoid_bce``: a sigmoid output whose backward pass is the cross-entropy one.

spaCy's text classifiers pass ``d_scores = scores - truths`` back into their
model. For a sigmoid output ``p = sigmoid(z)`` that is exactly the gradient of
the binary cross-entropy with respect to the *logits* ``z`` (dBCE/dz = p - y),
so it must go back unchanged. thinc's ``Logistic`` / ``Sigmoid`` instead
multiply it by ``p * (1 - p)``, which turns it into the gradient of a squared
error on probabilities: it vanishes on confidently wrong outputs and learns
slowly. (thinc's ``Softmax`` already passes its gradient through unchanged,
which is the softmax cross-entropy pairing.)
"""

from typing import Callable, Tuple

from thinc.api import Model
from thinc.types import Floats2d

InT = Floats2d
OutT = Floats2d


def sigmoid_bce() -> Model[InT, OutT]:
    """Sigmoid activation; the backward pass treats its input gradient as dBCE/dlogits."""
    return Model("sigmoid_bce", forward)


def forward(model: Model[InT, OutT], X: InT, is_train: bool) -> Tuple[OutT, Callable]:
    Y = model.ops.sigmoid(X, inplace=False)

    def backprop(dY: OutT) -> InT:
        # dY = p - y is already the gradient with respect to the logits X.
        return dY

    return Y, backprop
