"""Shared machinery of the torch router families (imported only by them).

Every torch family is written once, as a forward pass over parameters with a leading draw axis S:
a single ``fit`` is the S = 1 case and ``fit_many`` trains S draws together. Draw s starts from
the weights a generator seeded with its own seed draws (``seeds[s]``, from
:func:`dars.routers.base.draw_seed`: draws are independent, exactly as sequential fits with those
seeds would be), training is full-batch Adam
for a fixed number of epochs (no shuffling, no early stopping; the mlp family adds minibatches
and a per-draw stopping rule, see ``dars.routers.families.mlp``), and the total loss is the sum of
per-draw losses. Adam acts elementwise, so each draw's slice follows the same trajectory as its
own fit.

Training amplifies float rounding differences (Adam normalises tiny gradients to full-size
steps), so "the same trajectory" has to hold to the last bit, not approximately. Hence: one
intra-op thread by default, batched products whose per-draw shape does not depend on S (bmm over
an expanded X rather than one wide GEMM; baddbmm rather than einsum), cross-entropy written out
rather than torch's fused kernel, and an Adam step made of correctly rounded ops. With these,
a slice of a batched fit equals
the one-draw fit bitwise on the machines we measured; tests allow 1e-5 for other BLAS builds.

Data is small (a few hundred queries × a handful of models), so CPU and float32.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import clone

from dars.routers.base import Router, RouterTags, Stats, _write_atomic
from dars.routers.targets import BatchedTargets, Targets

__all__ = [
    "TorchRouter",
    "bce_with_logits",
    "first_layer",
    "glorot",
    "readout",
    "torch_threads",
    "zeros",
]

DTYPE = torch.float32
# Draws trained together by default: larger blocks spill the activations out of cache and run
# slower per draw (measured at 120 queries × 384 dims: 16 per block ~1.5x faster than 48).
DRAW_BLOCK = 16


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` intra-op threads (None: 1), restoring the previous setting afterwards.

    One thread by default: these models are small, parallelism comes from running several
    (benchmark, family) training tasks side by side, oversubscribed OpenMP threads spin badly on
    a shared machine, and multi-threaded reductions split work by tensor size, so a batched fit
    would round differently from a single one.
    """
    n = n if n is not None else 1
    old = torch.get_num_threads()
    # Always set, even when get_num_threads() already says n: it reports OpenMP's setting, and
    # another library (threadpoolctl) may have changed that without torch's BLAS following.
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def first_layer(X: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """Shared inputs X (n, d) through per-draw weights W (S, d, h) [+ b (S, h)] -> (S, n, h).

    A batched product over an expanded (not copied) X: every draw runs the same GEMM shape as a
    single fit, so slices round exactly as a one-draw fit does (one (n, d) × (d, S·h) product
    would let the BLAS block the sum differently as S changes, and training amplifies that).
    """
    S = W.shape[0]
    Xs = X.expand(S, *X.shape)
    if b is None:
        return torch.bmm(Xs, W)
    return torch.baddbmm(b[:, None, :], Xs, W)


def readout(h: torch.Tensor, E: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-model linear readout: h (S, n, k) · E (S, M, k)ᵀ + b (S, M) -> (S, n, M).

    An explicit baddbmm rather than einsum: einsum may fold or squeeze a size-1 draw axis and pick
    another kernel, so a one-draw fit would round differently from its slice of a batched fit.
    """
    return torch.baddbmm(b[:, None, :], h, E.transpose(1, 2))


def bce_with_logits(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Elementwise binary cross-entropy on logits, in the usual overflow-safe form.

    Written out because torch's fused kernel's backward rounds differently depending on the
    tensor's total size, which breaks the batched == one-draw-at-a-time guarantee.
    """
    return logits.clamp_min(0) - logits * target + torch.log1p(torch.exp(-logits.abs()))


def glorot(gen: torch.Generator, fan_in: int, fan_out: int, *shape: int) -> torch.Tensor:
    """Glorot-uniform float32 tensor of ``shape`` drawn from ``gen``."""
    bound = float(np.sqrt(6.0 / (fan_in + fan_out)))
    return (torch.rand(*shape, generator=gen, dtype=DTYPE) * 2.0 - 1.0) * bound


def zeros(*shape: int) -> torch.Tensor:
    return torch.zeros(*shape, dtype=DTYPE)


class ExactAdam:
    """Adam with L2 weight decay added to the gradient (as ``torch.optim.Adam(weight_decay=…)``),
    written with correctly rounded elementwise ops only (mul, add, sub, div, sqrt).

    torch's Adam uses lerp/addcmul/addcdiv, whose vectorised body and scalar tail round
    differently (FMA); an element of a small parameter (a per-model bias) sits in the scalar tail
    when S = 1 and in the vector body when S > 1, and training amplifies that 1-ulp difference.
    Here every op rounds the same on both paths, so each draw's slice is updated exactly as its
    one-draw fit would be.
    """

    def __init__(
        self,
        params: list[torch.Tensor],
        *,
        lr: float,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = params
        self.lr, self.weight_decay, self.eps = lr, weight_decay, eps
        self.beta1, self.beta2 = betas
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        # Scratch space: a fresh tensor per op (page faults on new memory) cost more than the
        # arithmetic (a (16, 384, 64) multiply: 0.8 ms into a new tensor, 0.23 ms into a kept one).
        self.tmp = [torch.empty_like(p) for p in params]
        self.t = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        bc1 = 1.0 - self.beta1**self.t
        bc2 = 1.0 - self.beta2**self.t
        # A head unused by this target kind (σ under single-shot) has no gradient: left alone.
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        ps = [self.params[i] for i in live]
        ms, vs = [self.m[i] for i in live], [self.v[i] for i in live]
        tmp = [self.tmp[i] for i in live]
        gs = [p.grad for p in ps]
        # g ← g + p·wd; v ← v·β2 + (g·g)·(1−β2); m ← m·β1 + g·(1−β1);
        # p ← p − (m/bc1) / (sqrt(v/bc2) + ε) · lr: in-place foreach calls (one call per op for
        # all tensors: the Python overhead of a per-tensor loop was the largest single cost of
        # training these small models), the gradient and one kept tensor per parameter as
        # scratch (the gradient is dropped at the next zero_grad). On CPU each call applies the
        # plain elementwise kernel tensor by tensor, so the rounding is that of the formulas.
        if self.weight_decay:
            for p, t in zip(ps, tmp, strict=True):
                torch.mul(p, self.weight_decay, out=t)
            torch._foreach_add_(gs, tmp)
        for g, t in zip(gs, tmp, strict=True):
            torch.mul(g, g, out=t)
        torch._foreach_mul_(tmp, 1.0 - self.beta2)
        torch._foreach_mul_(vs, self.beta2)
        torch._foreach_add_(vs, tmp)
        torch._foreach_mul_(gs, 1.0 - self.beta1)
        torch._foreach_mul_(ms, self.beta1)
        torch._foreach_add_(ms, gs)
        for v, t in zip(vs, tmp, strict=True):
            torch.div(v, bc2, out=t)
        torch._foreach_sqrt_(tmp)
        torch._foreach_add_(tmp, self.eps)
        for m, g in zip(ms, gs, strict=True):
            torch.div(m, bc1, out=g)
        torch._foreach_div_(gs, tmp)
        torch._foreach_mul_(gs, self.lr)
        torch._foreach_sub_(ps, gs)


class TorchRouter(Router):
    """Base of the torch families: standardised inputs, batched full-batch Adam training.

    Subclasses define ``_init_params`` (unbatched initial tensors), ``_forward`` (batched
    parameters and standardised X -> dict of (S, n, M) outputs), ``_loss`` (per-draw loss, (S,))
    and ``_outputs_to_stats``. Hyperparameters every subclass takes: ``epochs``, ``lr``,
    ``weight_decay``, ``n_threads``, ``random_state``.

    Fitted attributes: ``x_mean_``, ``x_scale_`` and ``params_`` (dict of float32 tensors, each
    with a leading axis of size 1).
    """

    # Families restate this in their own tags; it holds for any subclass that declares none.
    tags = RouterTags(needs_torch=True)
    #: Draws trained together by ``fit_many`` unless ``chunk_size`` says otherwise.
    draw_block: int = DRAW_BLOCK

    def _fit_threads(self) -> AbstractContextManager[Any]:
        # Not threadpoolctl: limiting torch's OpenMP behind its back left its BLAS threaded and
        # broke the batched == sequential guarantee. torch_threads sets both.
        return torch_threads(self.n_threads)

    # -- to implement ----------------------------------------------------------------------
    def _init_params(
        self, gen: torch.Generator, n_features: int, n_models: int
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _forward(
        self, params: dict[str, torch.Tensor], X: torch.Tensor, **kw: Any
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _loss(
        self,
        out: dict[str, torch.Tensor],
        tgt: dict[str, torch.Tensor],
        has_sigma: bool,
    ) -> torch.Tensor:
        raise NotImplementedError

    def _outputs_to_stats(self, out: dict[str, torch.Tensor]) -> Stats:
        raise NotImplementedError

    def _train_inputs(self, X: torch.Tensor) -> dict[str, Any]:
        """Extra keyword arguments for ``_forward`` during training (e.g. a λ grid)."""
        return {}

    # -- shared ----------------------------------------------------------------------------
    def _validate_params(self) -> None:
        super()._validate_params()
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int | np.integer):
            raise ValueError(f"{self.name}: epochs must be an int, got {self.epochs!r}")
        if self.epochs < 1:
            raise ValueError(f"{self.name}: epochs must be >= 1, got {self.epochs}")
        if not self.lr > 0:
            raise ValueError(f"{self.name}: lr must be > 0, got {self.lr!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"{self.name}: weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.n_threads is not None and (
            not isinstance(self.n_threads, int | np.integer) or self.n_threads < 1
        ):
            raise ValueError(f"{self.name}: n_threads must be an int >= 1 or None")

    def _standardised(self, X: np.ndarray) -> torch.Tensor:
        return torch.as_tensor((X - self.x_mean_) / self.x_scale_, dtype=DTYPE)

    def _set_scaler(self, X: np.ndarray) -> None:
        self.x_mean_ = X.mean(axis=0)
        scale = X.std(axis=0)
        self.x_scale_ = np.where(scale > 0, scale, 1.0)

    def _target_tensors(self, targets: BatchedTargets) -> dict[str, torch.Tensor]:
        """Training targets as float32 tensors (S, n, M); families may derive more."""
        tgt = {
            "q": torch.as_tensor(targets.q, dtype=DTYPE),
            "c": torch.as_tensor(targets.c, dtype=DTYPE),
        }
        if targets.sigma is not None:
            tgt["sigma"] = torch.as_tensor(targets.sigma, dtype=DTYPE)
        return tgt

    def _init_batched(self, seeds: Sequence[int], *shape: int) -> dict[str, torch.Tensor]:
        """Initial parameters of len(seeds) draws, stacked on a leading axis: draw s is
        ``_init_params`` from a generator seeded with ``seeds[s]`` (``shape``: the arguments
        after the generator), exactly what a one-draw fit seeded ``seeds[s]`` starts from."""
        inits: dict[int, dict[str, torch.Tensor]] = {}
        for seed in dict.fromkeys(seeds):  # equal seeds give equal weights: draw them once
            inits[seed] = self._init_params(torch.Generator().manual_seed(int(seed)), *shape)
        keys = inits[seeds[0]].keys()
        return {
            k: torch.stack([inits[seed][k] for seed in seeds]).requires_grad_(True) for k in keys
        }

    def _train(
        self, Xt: torch.Tensor, targets: BatchedTargets, seeds: Sequence[int]
    ) -> dict[str, torch.Tensor]:
        """Train all draws of ``targets`` together, draw s initialised from ``seeds[s]``;
        returns batched parameters (S, ...)."""
        params = self._init_batched(seeds, Xt.shape[1], targets.n_models)
        tgt = self._target_tensors(targets)
        extra = self._train_inputs(Xt)
        has_sigma = targets.sigma is not None
        opt = ExactAdam(
            list(params.values()), lr=float(self.lr), weight_decay=float(self.weight_decay)
        )
        for _ in range(int(self.epochs)):
            opt.zero_grad()
            out = self._forward(params, Xt, **extra)
            # Summing per-draw losses keeps each draw's gradient equal to its own fit's.
            loss = self._loss(out, tgt, has_sigma).sum()
            loss.backward()
            opt.step()
        return {k: v.detach() for k, v in params.items()}

    def _fit(self, X: np.ndarray, targets: Targets) -> None:
        self._set_scaler(X)
        with torch_threads(self.n_threads):
            params = self._train(
                self._standardised(X), BatchedTargets.stack([targets]), [self._seed()]
            )
        self.params_ = params

    def _fit_batched(
        self, X: np.ndarray, targets: BatchedTargets, chunk_size: int | None, seeds: list[int]
    ) -> list[Router]:
        proto = clone(self)
        proto._set_scaler(X)
        Xt = proto._standardised(X)
        S = targets.n_draws
        step = chunk_size or self.draw_block
        routers: list[Router] = []
        with torch_threads(self.n_threads):
            for lo in range(0, S, step):
                hi = min(S, lo + step)
                chunk = BatchedTargets(
                    q=targets.q[lo:hi],
                    c=targets.c[lo:hi],
                    sigma=None if targets.sigma is None else targets.sigma[lo:hi],
                    models=targets.models,
                )
                params = proto._train(Xt, chunk, seeds[lo:hi])
                for s in range(hi - lo):
                    r = clone(self)
                    r.x_mean_, r.x_scale_ = proto.x_mean_, proto.x_scale_
                    r.params_ = {k: v[s : s + 1].clone() for k, v in params.items()}
                    routers.append(r)
        return routers

    def _raw_outputs(self, X: np.ndarray, **kw: Any) -> dict[str, torch.Tensor]:
        with torch_threads(self.n_threads), torch.no_grad():
            return self._forward(self.params_, self._standardised(X), **kw)

    def _predict_stats(self, X: np.ndarray) -> Stats:
        stats = self._outputs_to_stats(self._raw_outputs(X))
        return Stats(
            q=stats.q[0],
            c=stats.c[0],
            sigma=None if stats.sigma is None else stats.sigma[0],
            risk_beta=stats.risk_beta,
        )

    @staticmethod
    def _stacked_blocks(
        routers: Sequence[Router], block: int = 32
    ) -> Iterator[tuple[int, dict[str, torch.Tensor]]] | None:
        """(first draw, parameters of up to ``block`` routers concatenated along the draw axis)
        per block, or None when the routers do not share hyperparameters (their seeds aside),
        target kind and standardisation (then they are not one architecture and must be run one
        by one). Routers from one fit_many share them, so one forward pass serves a block of
        draws."""
        first = routers[0]
        arch = {**first.get_params(), "random_state": None}
        same = all(
            {**r.get_params(), "random_state": None} == arch
            and r.has_sigma_ == first.has_sigma_
            and np.array_equal(r.x_mean_, first.x_mean_)
            and np.array_equal(r.x_scale_, first.x_scale_)
            for r in routers
        )
        if not same:
            return None
        keys = list(first.params_)
        return (
            (lo, {k: torch.cat([r.params_[k] for r in routers[lo : lo + block]]) for k in keys})
            for lo in range(0, len(routers), block)
        )

    @classmethod
    def _predict_stats_many(cls, routers: Sequence[Router], X: np.ndarray) -> Stats:
        blocks = cls._stacked_blocks(routers)
        if blocks is None:
            return super()._predict_stats_many(routers, X)
        first = routers[0]
        with torch_threads(first.n_threads), torch.no_grad():
            Xt = first._standardised(X)
            parts = [first._outputs_to_stats(first._forward(params, Xt)) for _, params in blocks]
        return Stats(
            q=np.concatenate([p.q for p in parts]),
            c=np.concatenate([p.c for p in parts]),
            sigma=None if parts[0].sigma is None else np.concatenate([p.sigma for p in parts]),
            risk_beta=parts[0].risk_beta,
        )

    # -- persistence: tensors only, loaded with weights_only=True ---------------------------
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {"x_mean": self.x_mean_, "x_scale": self.x_scale_}
        arrays.update({f"param.{k}": v.numpy() for k, v in self.params_.items()})
        return {}, arrays

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.x_mean_ = arrays["x_mean"]
        self.x_scale_ = arrays["x_scale"]
        self.params_ = {
            k.removeprefix("param."): torch.as_tensor(v)
            for k, v in arrays.items()
            if k.startswith("param.")
        }

    def _write_arrays(self, path: Path, arrays: dict[str, np.ndarray]) -> None:
        buf = io.BytesIO()
        torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}, buf)
        _write_atomic(path / "state.pt", buf.getvalue())

    @classmethod
    def _read_arrays(cls, path: Path) -> dict[str, np.ndarray]:
        state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not all(
            isinstance(v, torch.Tensor) for v in state.values()
        ):
            raise ValueError(f"{path / 'state.pt'} does not hold a dict of tensors")
        return {k: v.numpy() for k, v in state.items()}
