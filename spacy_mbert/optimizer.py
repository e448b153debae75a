"""``spacy-mbert.AdamW.v1``: spaCy's optimizer block, stepped by ``torch.optim.AdamW``.

thinc's ``Adam.v1`` steps a torch model tensor by tensor: every ``finish_update``
copies each parameter and gradient into thinc's NumPy Adam, one single-threaded
tensor at a time (70% of an e5-small training step on some CPUs), keeps the moments
in NumPy, clips each tensor's gradient on its own and decays every tensor, biases
and LayerNorm weights included. This optimizer keeps thinc's ``Optimizer`` (so
``[training.optimizer]``, its learning-rate schedule, betas, eps, ``L2`` and
``grad_clip`` mean what they mean in ``Adam.v1``, read at every step), and the
encoder shims (``MBertShim.finish_update``) hand it their whole network instead:
one ``torch.optim.AdamW`` per network, its fused kernel (one pass over each tensor;
about 10x torch's default per-tensor path on a CPU), moments and gradients in torch,
gradients clipped by their global norm and no weight decay on biases and LayerNorm
weights, as Hugging Face's ``Trainer`` does.

What a network is: the torch model of one component (the encoder of ``transformer``
or a QA/translation head with its encoder, or a head's adapter). A listener head's
own thinc layers (textcat's pooling MLP, a few hundred thousand weights) are stepped
by the same AdamW arithmetic one array at a time and clipped per array, as thinc
does: spaCy hands them to the optimizer in another component's ``finish_update``,
after the encoder has already stepped.
"""

import math
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import numpy
import torch
from spacy.util import registry
from thinc.api import Optimizer
from thinc.types import FloatsXd

from .errors import UserError

# thinc names a bias "b" (Linear, Softmax, Maxout, LayerNorm) and LayerNorm's gain "G".
THINC_NO_DECAY = ("b", "G")


@registry.optimizers("spacy-mbert.AdamW.v1")
def adamw_v1(
    learn_rate=5e-5,
    *,
    beta1=0.9,
    beta2=0.999,
    eps=1e-8,
    L2=0.01,
    grad_clip=1.0,
    L2_is_weight_decay: bool = True,
    use_averages: bool = False,
    clip_global_norm: bool = True,
    decay_norms_and_biases: bool = False,
    foreach: Optional[bool] = None,
    fused: Optional[bool] = None,
) -> "TorchAdamW":
    """AdamW with torch's kernels for the torch networks of this package's components.

    learn_rate (float or schedule): The peak learning rate, or a schedule such as
        ``warmup_linear.v1``; read at every step, as in ``Adam.v1``.
    beta1, beta2, eps (float or schedule): Adam's moment decays and epsilon (torch's
        placement: added to the bias-corrected root of the second moment).
    L2 (float or schedule): Decoupled weight decay (AdamW's ``weight_decay``).
    grad_clip (float or schedule): Clip gradients to this norm; 0 switches clipping off.
    L2_is_weight_decay (bool): Must be true: AdamW's decay is decoupled; ``Adam.v1``
        offers the coupled L2 penalty.
    use_averages (bool): Must be false: parameter averages would be a third copy of
        every weight; ``Adam.v1`` offers them.
    clip_global_norm (bool): Clip a network's gradients by their joint norm (Hugging
        Face's ``clip_grad_norm_``); false: each tensor's gradient on its own (thinc).
    decay_norms_and_biases (bool): Also decay biases and LayerNorm weights (thinc);
        false, the default, leaves them undecayed (Hugging Face's ``Trainer``).
    foreach (Optional[bool]): torch's multi-tensor kernels instead of the fused one;
        None: torch's choice where the fused kernel is not used.
    fused (Optional[bool]): torch's fused AdamW kernel, which reads and writes each
        tensor once per step where the default path makes a pass per operation (an
        e5-small step: 0.09 s fused, 0.48 s foreach, 0.93 s torch's default on 2 CPU
        cores). None: fused for CPU and CUDA floating-point parameters, unless
        ``foreach`` is set.
    """
    if not L2_is_weight_decay:
        raise UserError(
            "[training.optimizer] spacy-mbert.AdamW.v1 decays weights decoupled from the gradient (AdamW); "
            "set L2_is_weight_decay = true, or use Adam.v1 for a coupled L2 penalty."
        )
    if use_averages:
        raise UserError(
            "[training.optimizer] spacy-mbert.AdamW.v1 keeps no parameter averages (a third copy of every "
            "weight); set use_averages = false, or use Adam.v1 to average."
        )
    return TorchAdamW(
        learn_rate,
        beta1=beta1,
        beta2=beta2,
        eps=eps,
        L2=L2,
        grad_clip=grad_clip,
        clip_global_norm=clip_global_norm,
        decay_norms_and_biases=decay_norms_and_biases,
        foreach=foreach,
        fused=fused,
    )


class TorchAdamW(Optimizer):
    """thinc's ``Optimizer`` (schedules, settings) whose steps are AdamW in torch.

    ``step_network`` steps a torch network (called by the encoder shims'
    ``finish_update``); ``__call__`` steps one thinc array (any other layer).
    """

    # thinc's Optimizer locks its attributes with __slots__; these are this class's own.
    __slots__ = ("clip_global_norm", "decay_norms_and_biases", "foreach", "fused", "_networks", "_arrays")

    def __init__(
        self,
        learn_rate,
        *,
        clip_global_norm: bool = True,
        decay_norms_and_biases: bool = False,
        foreach: Optional[bool] = None,
        fused: Optional[bool] = None,
        **settings,
    ):
        if fused and foreach:
            raise UserError("[training.optimizer] set one of fused and foreach, not both (torch runs one kernel).")
        super().__init__(learn_rate, use_averages=False, L2_is_weight_decay=True, **settings)
        self.clip_global_norm = clip_global_norm
        self.decay_norms_and_biases = decay_norms_and_biases
        self.foreach = foreach
        self.fused = fused
        # network key -> (its trainable parameters, their shadows, the shadows' torch optimizer)
        self._networks: Dict[object, Tuple[list, list, torch.optim.AdamW]] = {}
        # thinc array key -> [step, first moment, second moment]
        self._arrays: Dict[Tuple[int, str], list] = {}

    # ------------------------------------------------------------ torch networks

    def step_network(
        self,
        key: object,
        network: torch.nn.Module,
        *,
        lr_scale: Callable[[str], float] = lambda name: 1.0,
        skip: bool = False,
    ) -> None:
        """One AdamW step of ``network``'s parameters that have a gradient, then clear the gradients.

        key: Identifies the network across steps (its shim's id).
        lr_scale: Learning-rate factor of a parameter, by name (a LoRA adapter's ``learn_rate_scale``).
        skip: Clear the gradients without stepping (mixed precision found an overflow).
        """
        params, shadows, optimizer = self._network_optimizer(key, network, lr_scale)
        stepped = [(param, shadow) for param, shadow in zip(params, shadows) if param.grad is not None]
        if not skip and stepped:
            for param, shadow in stepped:
                shadow.data, shadow.grad = param.data, param.grad
            if self.grad_clip:
                self._clip([shadow for _, shadow in stepped])
            for group in optimizer.param_groups:
                group["lr"] = self.learn_rate * group["lr_scale"]
                group["betas"] = (self.b1, self.b2)
                group["eps"] = self.eps
                group["weight_decay"] = self.L2 if group["decay"] else 0.0
            optimizer.step()
        # None, not zeros: the gradients' memory is free until the next backward pass.
        for param, shadow in zip(params, shadows):
            param.grad = shadow.grad = None

    def _network_optimizer(self, key, network: torch.nn.Module, lr_scale):
        """The network's trainable parameters, their shadows and the AdamW that steps the shadows.

        A shadow shares its parameter's memory (``.data``) but not its autograd version
        counter, so a step changes the weights the way thinc's ``PyTorchShim`` does: without
        invalidating a forward pass whose backward is still to come. ``nlp.update(sgd=...)``
        steps each component right after its own update, so a listened-to encoder steps
        before its listeners' backward pass (``spacy train`` steps after all of them).
        """
        named = list(self._named_decay(network))
        params = [param for _, param, _ in named]
        known = self._networks.get(key)
        if known is not None and len(known[0]) == len(params) and all(a is b for a, b in zip(known[0], params)):
            return known
        # New, or rebuilt (loaded, moved onto another base): its moments start again.
        shadows = [torch.nn.Parameter(param.data) for param in params]
        groups: Dict[Tuple[float, bool], List[torch.nn.Parameter]] = {}
        for (name, _, decay), shadow in zip(named, shadows):
            groups.setdefault((float(lr_scale(name)), decay), []).append(shadow)
        optimizer = torch.optim.AdamW(
            [
                {"params": members, "lr": self.learn_rate * scale, "lr_scale": scale, "decay": decay}
                for (scale, decay), members in groups.items()
            ],
            lr=self.learn_rate,
            **self._kernel(shadows),
        )
        self._networks[key] = (params, shadows, optimizer)
        return self._networks[key]

    def _kernel(self, params: List[torch.nn.Parameter]) -> Dict[str, Optional[bool]]:
        """torch's AdamW kernel options: fused where it runs (CPU, CUDA; floating point) unless told otherwise."""
        fused = self.fused
        if fused is None:
            fused = self.foreach is None and fused_kernel_runs(params)
        return {"fused": True} if fused else {"foreach": self.foreach}

    def _named_decay(self, network: torch.nn.Module) -> Iterable[Tuple[str, torch.nn.Parameter, bool]]:
        """(name, parameter, decayed?) of every trainable parameter, each tied parameter once."""
        seen = set()
        for module_name, module in network.named_modules():
            is_norm = isinstance(module, torch.nn.LayerNorm) or "LayerNorm" in type(module).__name__
            for name, param in module.named_parameters(recurse=False):
                if not param.requires_grad or id(param) in seen:
                    continue
                seen.add(id(param))
                decay = self.decay_norms_and_biases or not (is_norm or name == "bias")
                yield f"{module_name}.{name}" if module_name else name, param, decay

    def _clip(self, params: List[torch.nn.Parameter]) -> None:
        if self.clip_global_norm:
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip, foreach=self.foreach)
        else:
            for param in params:
                torch.nn.utils.clip_grad_norm_([param], self.grad_clip)

    # --------------------------------------------------------------- thinc arrays

    def __call__(self, key: Tuple[int, str], weights: FloatsXd, gradient: FloatsXd, *, lr_scale: float = 1.0):
        """AdamW on one thinc array, in place (torch views of the arrays, no copies); clipped on its own."""
        if len(gradient) < 1:
            return weights, gradient
        w, g = _torch_view(weights), _torch_view(gradient)
        if self.grad_clip:
            norm = float(g.norm())
            if norm > self.grad_clip:
                g.mul_(self.grad_clip / norm)
        state = self._arrays.get(key)
        if state is None or state[1].shape != w.shape:
            state = self._arrays[key] = [0, torch.zeros_like(w), torch.zeros_like(w)]
        state[0] += 1
        step, exp_avg, exp_avg_sq = state
        lr = self.learn_rate * lr_scale
        if self.L2 and (self.decay_norms_and_biases or key[1] not in THINC_NO_DECAY):
            w.mul_(1 - lr * self.L2)
        exp_avg.lerp_(g, 1 - self.b1)
        exp_avg_sq.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
        denom = (exp_avg_sq.sqrt() / math.sqrt(1 - self.b2**step)).add_(self.eps)
        w.addcdiv_(exp_avg, denom, value=-lr / (1 - self.b1**step))
        g.zero_()
        return weights, gradient


def fused_kernel_runs(params: Iterable[torch.Tensor]) -> bool:
    """Whether torch's fused AdamW kernel takes these parameters: floating point, on the CPU or a CUDA device."""
    return all(param.device.type in ("cpu", "cuda") and param.is_floating_point() for param in params)


def _torch_view(array: FloatsXd) -> torch.Tensor:
    """A torch tensor sharing ``array``'s memory (NumPy, or CuPy through the CUDA array interface)."""
    return torch.from_numpy(array) if isinstance(array, numpy.ndarray) else torch.as_tensor(array)
