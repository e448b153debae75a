"""``spacy-mbert.AdamW.v1``: nlp.update steps as a reference ``torch.optim.AdamW`` loop does."""

import pytest
import torch
from spacy.util import fix_random_seed, load_config, load_model_from_config, registry
from thinc.api import get_current_ops

from spacy_mbert.errors import UserError
from spacy_mbert.optimizer import TorchAdamW

from .test_textcat import CONFIGS, _exclusive_examples

STEPS = 6
# Small enough that the encoder's and the head's gradients are clipped on most steps.
GRAD_CLIP = 0.05
# float32 arithmetic in a different order (torch's multi-tensor kernels vs one
# tensor at a time), compounded over STEPS steps through the gradients.
TOLERANCE = dict(rtol=1e-4, atol=1e-6)


def _textcat_pipeline(encoder_dir, optimizer: str):
    fix_random_seed(0)
    config = load_config(
        CONFIGS / "textcat.cfg",
        overrides={
            "paths.encoder": str(encoder_dir),
            # No dropout anywhere: both runs must see the same forward pass.
            "components.transformer.model.transformer_config": {
                "hidden_dropout_prob": 0.0,
                "attention_probs_dropout_prob": 0.0,
            },
            "training.optimizer.@optimizers": optimizer,
            "training.optimizer.grad_clip": GRAD_CLIP,
            "training.optimizer.learn_rate.warmup_steps": 2,
            "training.optimizer.learn_rate.total_steps": STEPS,
            "training.optimizer.learn_rate.initial_rate": 2e-3,
        },
        interpolate=True,
    )
    return load_model_from_config(config, auto_fill=True, validate=True)


def _batches(examples):
    return [examples[i * 8 : i * 8 + 8] for i in range(STEPS)]


def _encoder(nlp) -> torch.nn.Module:
    return nlp.get_pipe("transformer").model.transformer


def _head_arrays(nlp):
    """(key, node, name) of every thinc array of the textcat head."""
    return [
        ((node.id, name), node, name)
        for node in nlp.get_pipe("textcat").model.walk()
        for name in node.param_names
        if node.has_param(name)
    ]


class ReferenceAdamW:
    """The plain PyTorch loop's optimizer, as a Hugging Face Trainer sets it up: one
    ``torch.optim.AdamW`` over the encoder (biases and LayerNorm weights undecayed) with
    ``clip_grad_norm_`` over all of it, and one per head array clipped on its own."""

    def __init__(self, nlp, weight_decay: float):
        no_decay = ("bias", "LayerNorm.weight")
        named = list(_encoder(nlp).named_parameters())
        self.encoder_params = [p for _, p in named]
        self.encoder = torch.optim.AdamW(
            [
                {"params": [p for n, p in named if not n.endswith(no_decay)], "weight_decay": weight_decay},
                {"params": [p for n, p in named if n.endswith(no_decay)], "weight_decay": 0.0},
            ]
        )
        self.head = []
        for _, node, name in _head_arrays(nlp):
            param = torch.nn.Parameter(torch.from_numpy(node.get_param(name)))  # shares the array
            decay = 0.0 if name == "b" else weight_decay
            self.head.append((node, name, param, torch.optim.AdamW([param], weight_decay=decay)))
        self.clipped = 0

    def step(self, lr: float) -> None:
        for group in self.encoder.param_groups:
            group["lr"] = lr
        norm = torch.nn.utils.clip_grad_norm_(self.encoder_params, GRAD_CLIP)
        self.clipped += int(norm > GRAD_CLIP)
        self.encoder.step()
        self.encoder.zero_grad()
        for node, name, param, optimizer in self.head:
            if not node.has_grad(name):
                continue
            gradient = node.get_grad(name)
            param.grad = torch.from_numpy(gradient.copy())
            torch.nn.utils.clip_grad_norm_([param], GRAD_CLIP)
            optimizer.param_groups[0]["lr"] = lr
            optimizer.step()
            gradient[...] = 0


def test_training_steps_like_a_torch_adamw_loop(tiny_wordpiece_dir):
    ours = _textcat_pipeline(tiny_wordpiece_dir, "spacy-mbert.AdamW.v1")
    reference = _textcat_pipeline(tiny_wordpiece_dir, "spacy-mbert.AdamW.v1")
    examples = _exclusive_examples(ours)
    optimizer = ours.initialize(lambda: examples)
    schedule = reference.initialize(lambda: examples)  # only read: the learning rate of each step
    assert isinstance(optimizer, TorchAdamW)
    reference.get_pipe("transformer").model.from_bytes(ours.get_pipe("transformer").model.to_bytes())
    reference.get_pipe("textcat").model.from_bytes(ours.get_pipe("textcat").model.to_bytes())
    torch_loop = ReferenceAdamW(reference, weight_decay=optimizer.L2)

    for batch in _batches(examples):
        # What spacy train's loop does for a step: every backward pass, then every component's step.
        ours.update(batch, sgd=False, drop=0.0)
        for _, component in ours.pipeline:
            if getattr(component, "is_trainable", False) and component.model not in (True, False, None):
                component.finish_update(optimizer)
        optimizer.step_schedules()
        reference.update(batch, sgd=False, drop=0.0)  # the gradients only
        torch_loop.step(lr=schedule.learn_rate)
        schedule.step_schedules()

    assert torch_loop.clipped >= STEPS // 2  # clipping did its part (the encoder on most steps)
    # The encoder was stepped by torch's fused kernel (the default on the CPU); the reference by its default path.
    assert all(group["fused"] for _, _, adamw in optimizer._networks.values() for group in adamw.param_groups)
    reference_state = _encoder(reference).state_dict()
    moved = 0
    for name, value in _encoder(ours).state_dict().items():
        torch.testing.assert_close(value, reference_state[name], **TOLERANCE, msg=name)
    ops = get_current_ops()
    for (_, node, name), (_, ref_node, _) in zip(_head_arrays(ours), _head_arrays(reference)):
        ours_value = torch.from_numpy(ops.to_numpy(node.get_param(name)))
        torch.testing.assert_close(ours_value, torch.from_numpy(ref_node.get_param(name)), **TOLERANCE, msg=name)
        moved += 1
    assert moved >= 2  # the head's weight and bias arrays at least


def test_biases_and_layer_norms_are_not_decayed_and_adapters_scale_their_rate():
    from transformers import BertConfig, BertModel

    network = BertModel(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2))
    optimizer = registry.resolve({"o": {"@optimizers": "spacy-mbert.AdamW.v1", "learn_rate": 1e-3}})["o"]
    network(torch.tensor([[1, 2, 3]])).last_hidden_state.sum().backward()
    optimizer.step_network("net", network, lr_scale=lambda name: 10.0 if "query" in name else 1.0)
    params, shadows, torch_optimizer = optimizer._networks["net"]
    shadow_of = {id(param): shadow for param, shadow in zip(params, shadows)}
    group_of = {id(shadow): group for group in torch_optimizer.param_groups for shadow in group["params"]}
    for name, param in network.named_parameters():
        group = group_of[id(shadow_of[id(param)])]
        assert group["weight_decay"] == (0.0 if "LayerNorm" in name or name.endswith("bias") else 0.01), name
        assert group["lr"] == pytest.approx(1e-2 if "query" in name else 1e-3), name
        assert param.grad is None  # cleared: no gradient memory held between steps


@pytest.mark.parametrize(
    "setting,message",
    [
        ({"L2_is_weight_decay": False}, "L2_is_weight_decay = true"),
        ({"use_averages": True}, "use_averages = false"),
        ({"fused": True, "foreach": True}, "one of fused and foreach"),
    ],
)
def test_settings_it_cannot_honour_give_one_line(setting, message):
    with pytest.raises(UserError, match=message) as error:
        registry.resolve({"o": {"@optimizers": "spacy-mbert.AdamW.v1", **setting}})
    assert "\n" not in str(error.value)
