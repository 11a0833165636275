"""Optimizers, learning-rate schedules and parameter groups, as MMAction2 configures them.

Semantics follow PyTorch/mmengine: SGD adds `weight_decay * param` to the (clipped) gradient
before momentum; Adam does the same; AdamW decays decoupled. Parameter groups are per-parameter
multipliers of the learning rate and of the weight decay, chosen by parameter path.
"""
import math
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

Path = str


def path_str(path) -> Path:
    """'backbone.layer1.0.conv1.conv.kernel' from a jax key path."""
    return '.'.join(str(getattr(k, 'key', getattr(k, 'idx', k))) for k in path)


# --------------------------------------------------------------------------------------------
# Learning-rate schedules: mmengine's param_scheduler list, composed multiplicatively.

def _scheduler_factor(cfg: Mapping[str, Any], epoch: jnp.ndarray,
                      max_epochs: int) -> jnp.ndarray:
    """Multiplier of the base lr for one scheduler at (possibly fractional) `epoch`."""
    kind = cfg['type']
    begin, end = cfg.get('begin', 0), cfg.get('end', max_epochs)
    t = jnp.clip(epoch, begin, end) - begin  # before begin: first value; after end: last value
    span = max(end - begin, 1)
    if kind == 'MultiStepLR':
        hits = sum((epoch >= m).astype(jnp.float32) for m in cfg['milestones'])
        return cfg.get('gamma', 0.1) ** hits
    if kind == 'StepLR':
        return cfg.get('gamma', 0.1) ** jnp.floor(t / cfg['step_size'])
    if kind == 'LinearLR':
        start, stop = cfg.get('start_factor', 1 / 3), cfg.get('end_factor', 1.0)
        return start + (stop - start) * t / span
    if kind == 'CosineAnnealingLR':
        t_max = cfg.get('T_max', span)
        floor = cfg.get('eta_min_ratio', 0.0)
        return floor + (1 - floor) * 0.5 * (1 + jnp.cos(math.pi * jnp.minimum(t, t_max) / t_max))
    if kind == 'ConstantLR':
        return jnp.where(t < span, cfg.get('factor', 1 / 3), 1.0)
    raise KeyError(f'Unknown param_scheduler type {kind!r} in {dict(cfg)}; known: MultiStepLR, '
                   'StepLR, LinearLR, CosineAnnealingLR, ConstantLR')


def build_schedule(param_scheduler: Sequence[Mapping[str, Any]], base_lr: float,
                   steps_per_epoch: int, max_epochs: int) -> optax.Schedule:
    """lr(step). `by_epoch` schedulers change at epoch boundaries unless
    `convert_to_iter_based=True`, which makes them continuous in steps (as in mmengine)."""
    for cfg in param_scheduler:
        if not cfg.get('by_epoch', True):
            raise ValueError(f'param_scheduler {dict(cfg)}: only by_epoch=True is supported; '
                             'give begin/end in epochs.')

    def schedule(step):
        fractional = step / steps_per_epoch
        lr = jnp.asarray(base_lr, jnp.float32)
        for cfg in param_scheduler:
            epoch = fractional if cfg.get('convert_to_iter_based', False) else jnp.floor(fractional)
            lr = lr * _scheduler_factor(cfg, epoch, max_epochs)
        return lr

    return schedule


# --------------------------------------------------------------------------------------------
# Parameter groups.

class ParamMults(NamedTuple):
    lr: float
    decay: float


def param_multipliers(params, paramwise_cfg: Mapping[str, Any],
                      is_frozen: Callable[[Path], bool] = lambda path: False) -> Any:
    """A pytree like `params` of ParamMults.

    `fc_lr5` is TSM's constructor: the last fc gets 5x lr (bias 10x), biases 2x lr and BatchNorm
    and biases no weight decay. Otherwise mmengine's defaults with norm/bias decay multipliers.
    Frozen parameters (`is_frozen(path)`; MMAction2's requires_grad=False) get lr 0.
    """
    fc_lr5 = paramwise_cfg.get('fc_lr5', False)
    norm_decay = paramwise_cfg.get('norm_decay_mult', 1.0)
    bias_decay = paramwise_cfg.get('bias_decay_mult', 1.0)
    bias_lr = paramwise_cfg.get('bias_lr_mult', 1.0)

    def mults(path, _) -> ParamMults:
        p = path_str(path)
        if is_frozen(p):
            return ParamMults(0.0, 0.0)
        is_bias = p.endswith('.bias')
        is_norm = '.bn.' in p or p.split('.')[-2].startswith(('bn', 'norm'))
        if fc_lr5:
            if p.startswith('cls_head.fc_cls.'):
                return ParamMults(10.0, 0.0) if is_bias else ParamMults(5.0, 1.0)
            if is_norm:
                return ParamMults(1.0, 0.0)
            return ParamMults(2.0, 0.0) if is_bias else ParamMults(1.0, 1.0)
        if is_norm:
            return ParamMults(1.0, norm_decay)
        return ParamMults(bias_lr, bias_decay) if is_bias else ParamMults(1.0, 1.0)

    return jax.tree_util.tree_map_with_path(mults, params)


def frozen_filter(model_cfg: Mapping[str, Any]) -> Callable[[Path], bool]:
    """Which parameters MMAction2's backbone sets requires_grad=False on.

    frozen_stages=N: the stem (conv1) and layer1..layerN. partial_bn: the affine parameters of
    every BatchNorm but the first (backbone.conv1.bn).
    """
    backbone = model_cfg.get('backbone', {})
    n = backbone.get('frozen_stages', -1)
    prefixes = [] if n < 0 else ['backbone.conv1.'] + [f'backbone.layer{i}.'
                                                       for i in range(1, n + 1)]
    partial_bn = backbone.get('partial_bn', False)

    def is_frozen(path: Path) -> bool:
        if any(path.startswith(p) for p in prefixes):
            return True
        return (partial_bn and path.startswith('backbone.') and '.bn.' in path
                and not path.startswith('backbone.conv1.bn.'))
    return is_frozen


def _scale_by_tree(factors) -> optax.GradientTransformation:
    return optax.stateless(lambda updates, params=None: jax.tree.map(
        lambda u, f: u * f, updates, factors))


def _decay_by_tree(weight_decay: float, factors) -> optax.GradientTransformation:
    def add_decay(updates, params):
        return jax.tree.map(lambda u, p, f: u + weight_decay * f * p, updates, params, factors)
    return optax.stateless(add_decay)


# --------------------------------------------------------------------------------------------

def build_optimizer(optim_wrapper: Mapping[str, Any], params, schedule: optax.Schedule,
                    is_frozen: Callable[[Path], bool] = lambda path: False
                    ) -> optax.GradientTransformation:
    """optax chain equal to MMAction2's optim_wrapper (optimizer, clip_grad, paramwise_cfg)."""
    opt = optim_wrapper['optimizer']
    mults = param_multipliers(params, optim_wrapper.get('paramwise_cfg', {}), is_frozen)
    lr_mults = jax.tree.map(lambda m: m.lr, mults, is_leaf=lambda x: isinstance(x, ParamMults))
    wd_mults = jax.tree.map(lambda m: m.decay, mults, is_leaf=lambda x: isinstance(x, ParamMults))
    wd = opt.get('weight_decay', 0.0)

    # Frozen parameters have no gradient in MMAction2 (requires_grad=False), so they take no
    # part in clip_grad's global norm either: their gradients are zeroed first.
    trainable = jax.tree_util.tree_map_with_path(
        lambda path, _: 0.0 if is_frozen(path_str(path)) else 1.0, params)
    chain = [_scale_by_tree(trainable)]
    max_norm = optim_wrapper.get('clip_grad', {}).get('max_norm')
    if max_norm:
        chain.append(optax.clip_by_global_norm(max_norm))
    kind = opt['type']
    if kind == 'SGD':
        chain += [_decay_by_tree(wd, wd_mults),
                  optax.trace(decay=opt.get('momentum', 0.0), nesterov=opt.get('nesterov', False))]
    elif kind in ('Adam', 'AdamW'):
        b1, b2 = opt.get('betas', (0.9, 0.999))
        adam = optax.scale_by_adam(b1=b1, b2=b2, eps=opt.get('eps', 1e-8))
        # Adam: L2 on the gradient (PyTorch); AdamW: decoupled, scaled by lr below.
        chain += ([_decay_by_tree(wd, wd_mults), adam] if kind == 'Adam'
                  else [adam, _decay_by_tree(wd, wd_mults)])
    else:
        raise KeyError(f'Unknown optimizer type {kind!r}; known: SGD, Adam, AdamW')
    chain += [_scale_by_tree(lr_mults), optax.scale_by_learning_rate(schedule)]
    return optax.chain(*chain)


def scaled_lr(base_lr: float, global_batch_size: int, auto_scale_lr: Mapping[str, Any]) -> float:
    """The linear scaling rule (Goyal et al.) as MMAction2's auto_scale_lr applies it."""
    if not auto_scale_lr.get('enable', False):
        return base_lr
    return base_lr * global_batch_size / auto_scale_lr['base_batch_size']
