"""``spacy-mbert.ClsPoolTextCat.v1``: a Hugging Face-style classification head for spaCy.

The stock spaCy + spacy-transformers text classifier pools wordpieces into spaCy
tokens (dropping [CLS]) and feeds them to a bag-of-words/attention ensemble.
This head classifies like ``AutoModelForSequenceClassification`` instead:

    TransformerListener -> cls_pool ([CLS] ⊕ mean/max over content wordpieces)
    -> Dropout -> depth x (Linear -> GELU -> Dropout) -> output layer

with the output layer paired to the gradient spaCy's text classifiers pass back
(``scores - truths``) so that training minimises the cross-entropy:

- exclusive classes (``textcat``): Softmax. thinc's Softmax passes the gradient
  straight to the logits, and for ``p = softmax(z)`` the cross-entropy gradient
  is ``dCE/dz = p - y``: the pair is right as is.
- multilabel (``textcat_multilabel``): Linear -> ``sigmoid_bce``. For
  ``p = sigmoid(z)`` the binary cross-entropy gradient is ``dBCE/dz = p - y``,
  so the gradient must pass the sigmoid unchanged; thinc's ``Logistic`` would
  multiply it by ``p(1-p)`` (a squared error on probabilities).

With ``mean_loss`` the gradient is also divided by the batch size, i.e. it is
the gradient of the *mean* cross-entropy over the batch, as in Hugging Face.

An empty doc (no tokens) gets all-zero scores, as spaCy's text classifiers give
a batch of empty docs, so ``nlp("").cats`` does not depend on what else is in
the batch; such docs pass no gradient back in training (``ClsPoolTextCatModel``,
the layer around the chain).
"""

from functools import partial
from typing import List, Optional, cast

import numpy
from spacy.ml.models.textcat import NEG_VALUE, resize_and_set_ref
from spacy.tokens import Doc
from spacy.util import registry
from spacy_transformers.layers import TransformerListener
from thinc.api import Dropout, Gelu, Linear, Model, Softmax
from thinc.layers.chain import forward as chain_forward
from thinc.layers.chain import init as init_chain
from thinc.layers.resizable import resizable, resize_linear_weighted
from thinc.types import Floats2d

from ..errors import UserError, corrupted_file_errors
from .layers import batch_mean_gradient, check_pooling, cls_pool, sigmoid_bce


@registry.architectures("spacy-mbert.ClsPoolTextCat.v1")
def ClsPoolTextCat(
    *,
    exclusive_classes: bool,
    pooling: str = "mean",
    hidden_width: int = 256,
    depth: int = 1,
    dropout: float = 0.1,
    grad_factor: float = 1.0,
    mean_loss: bool = True,
    upstream: str = "*",
    nO: Optional[int] = None,
) -> Model[List[Doc], Floats2d]:
    """Classify docs from the shared transformer's [CLS] and pooled wordpiece states.

    exclusive_classes (bool): True for one label per doc (softmax; ``textcat``),
        False for independent labels (sigmoid; ``textcat_multilabel``).
    pooling (str): Pooling over the content wordpieces, concatenated to [CLS]:
        "mean", "max" or "mean+max".
    hidden_width (int): Width of the hidden layers.
    depth (int): Number of hidden Linear -> GELU -> Dropout layers; 0 puts the
        output layer directly on the pooled features.
    dropout (float): Dropout on the pooled features and after each hidden layer.
        spaCy's components reset every dropout layer to ``[training] dropout``
        on each update, so in ``spacy train`` that setting wins.
    grad_factor (float): Multiplies the gradient sent to the transformer; 0
        freezes the transformer with respect to this component.
    mean_loss (bool): Divide the gradient by the batch size (the mean loss over
        the batch, as Hugging Face computes it) instead of spaCy's sum, so that
        ``grad_clip`` means the same as in Hugging Face.
    upstream (str): Name of the transformer component to listen to; "*" for any.
    nO (Optional[int]): Number of labels; normally set by the component from its labels.
    """
    check_pooling(pooling)
    if depth < 0 or (depth > 0 and hidden_width < 1):
        raise UserError(
            f"ClsPoolTextCat needs depth >= 0 and hidden_width >= 1 (got depth={depth}, "
            f"hidden_width={hidden_width}); use depth = 0 for no hidden layer."
        )
    listener = TransformerListener(upstream_name=upstream)
    pool = cls_pool(pooling=pooling, grad_factor=grad_factor)
    layers: List[Model] = [listener, pool, Dropout(dropout)]
    for _ in range(depth):
        layers.append(Gelu(nO=hidden_width, dropout=dropout))
    nI = hidden_width if depth > 0 else None
    # Small random output weights, as Hugging Face initialises its classifier
    # (normal, std 0.02). thinc's Softmax starts at zero, which sends no gradient
    # into the encoder at first and only a tiny one (~lr-sized weights) for many
    # steps: below Adam's epsilon, so the encoder barely fine-tunes.
    if exclusive_classes:
        # New labels added after training start with a very negative bias, so
        # they get ~0 probability until trained (as spaCy's textcat does).
        output_layer: Model = Softmax(nO=nO, nI=nI, init_W=hf_normal_init)
        fill_defaults = {"W": 0, "b": NEG_VALUE}
    else:
        output_layer = Linear(nO=nO, nI=nI, init_W=hf_normal_init)
        fill_defaults = {"W": 0, "b": 0}
    resizable_layer: Model = resizable(
        output_layer, resize_layer=partial(resize_linear_weighted, fill_defaults=fill_defaults)
    )
    layers.append(resizable_layer)
    if not exclusive_classes:
        layers.append(sigmoid_bce())
    if mean_loss:
        layers.append(batch_mean_gradient())
    model = ClsPoolTextCatModel(layers, listener=listener, pool=pool, output_layer=output_layer)
    model.attrs["multi_label"] = not exclusive_classes
    # textcat.add_label() calls this, before initialization (to set nO) and after
    # (to grow the trained output layer, keeping the trained rows).
    model.attrs["resize_output"] = partial(resize_and_set_ref, resizable_layer=resizable_layer)
    if nO is not None:
        model.set_dim("nO", cast(int, nO))
    return model


def hf_normal_init(ops, shape) -> Floats2d:
    """Normal(0, 0.02) weights, Hugging Face's ``initializer_range`` (seeded by spaCy's seed)."""
    return ops.asarray2f(numpy.random.normal(0.0, 0.02, shape).astype("float32"))


class ClsPoolTextCatModel(Model):
    """The head: thinc's ``chain`` of its layers, with all-zero scores for empty docs.

    A ``Model`` subclass only so that a damaged saved model fails with one line
    instead of a msgpack error; the layers run as thinc's ``chain`` runs them.
    """

    def __init__(self, layers: List[Model], *, listener: Model, pool: Model, output_layer: Model):
        super().__init__(
            ">>".join(layer.name for layer in layers),
            forward,
            init=init,
            layers=layers,
            dims={"nO": None, "nI": None},
            # The Transformer component finds its listeners by walking the model; the
            # "listener" ref is what spacy-transformers' own listener architectures set.
            refs={"listener": listener, "pool": pool, "output_layer": output_layer},
        )

    def from_bytes(self, bytes_data: bytes) -> "ClsPoolTextCatModel":
        with corrupted_file_errors("The text classifier's model file"):
            return super().from_bytes(bytes_data)


def forward(model: Model, docs: List[Doc], is_train: bool):
    """thinc's chain forward pass, with all-zero scores (and no gradient) for empty docs.

    spaCy's ``TextCategorizer.predict`` returns zeros for a batch in which every doc
    is empty without running the model; the model gives an empty doc in a mixed
    batch the same zeros, instead of the output layer's scores for a zero input.
    """
    scores, backprop = chain_forward(model, docs, is_train)
    empty = [i for i, doc in enumerate(docs) if len(doc) == 0]
    if not empty:
        return scores, backprop
    scores = scores.copy()
    scores[empty] = 0.0

    def backprop_without_empty(d_scores: Floats2d):
        d_scores = d_scores.copy()
        d_scores[empty] = 0.0
        return backprop(d_scores)

    return scores, backprop_without_empty


def init(model: Model, X=None, Y=None) -> None:
    # The pooled width follows from the transformer's width, which the
    # Transformer component sets on the listener when it finds it. Set it
    # before the chain runs, so that a sample with only empty docs still
    # gives the layers after the pooling their input width.
    listener = model.get_ref("listener")
    pool = model.get_ref("pool")
    if pool.has_dim("nI") is None and listener.has_dim("nO"):
        pool.set_dim("nI", listener.get_dim("nO"))
    init_chain(model, X, Y)
