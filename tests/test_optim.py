"""Optimizer chains against torch.optim, schedules and parameter groups against MMAction2's rules."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from action_jax.train import optim
from tolerances import EPS32, assert_close_norm, assert_close_ulps

# Parameters after 4 float32 steps against torch.optim's, relative to each tensor's largest:
# each step rounds a clip factor from a ~70-term norm summed in another order (~8 eps), the
# momentum or Adam moments, Adam's sqrt and division (a few eps each) of updates no larger
# than the parameters: ~20 eps per step. A wrong decay, lr multiplier or bias correction is
# off by percents.
OPTIM_REL = 2e-5


def _params(rng):
    return {
        'backbone': {'conv1': {'conv': {'kernel': rng.normal(size=(3, 3, 2, 4))},
                               'bn': {'scale': rng.normal(size=(4,)), 'bias': rng.normal(size=(4,))}}},
        'cls_head': {'fc_cls': {'kernel': rng.normal(size=(4, 5)), 'bias': rng.normal(size=(5,))}},
    }


def _run_ours(wrapper, params, grads_seq, lr):
    tx = optim.build_optimizer(wrapper, params, optax.constant_schedule(lr))
    state = tx.init(params)
    for g in grads_seq:
        updates, state = tx.update(g, state, params)
        params = optax.apply_updates(params, updates)
    return params


def _torch_groups(params, mults):
    leaves = jax.tree_util.tree_leaves_with_path(params)
    mult_leaves = jax.tree_util.tree_leaves(
        mults, is_leaf=lambda x: isinstance(x, optim.ParamMults))
    tensors = [torch.tensor(np.asarray(v), dtype=torch.float32, requires_grad=True)
               for _, v in leaves]
    return tensors, mult_leaves


@pytest.mark.parametrize('kind', ['SGD', 'Adam', 'AdamW'])
@pytest.mark.parametrize('fc_lr5', [False, True])
def test_matches_torch(kind, fc_lr5):
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), _params(rng))
    grads_seq = [jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape) * 30, jnp.float32), params)
                 for _ in range(4)]
    lr, wd, max_norm = 0.05, 1e-2, 5.0
    wrapper = dict(optimizer=dict(type=kind, lr=lr, momentum=0.9, weight_decay=wd),
                   clip_grad=dict(max_norm=max_norm),
                   paramwise_cfg=dict(fc_lr5=fc_lr5))
    ours = _run_ours(wrapper, params, grads_seq, lr)

    mults = optim.param_multipliers(params, wrapper['paramwise_cfg'])
    tensors, mult_leaves = _torch_groups(params, mults)
    groups = [dict(params=[t], lr=lr * m.lr, weight_decay=wd * m.decay)
              for t, m in zip(tensors, mult_leaves)]
    opt = {'SGD': lambda: torch.optim.SGD(groups, lr=lr, momentum=0.9),
           'Adam': lambda: torch.optim.Adam(groups, lr=lr),
           'AdamW': lambda: torch.optim.AdamW(groups, lr=lr)}[kind]()
    for g in grads_seq:
        for t, gl in zip(tensors, jax.tree_util.tree_leaves(g)):
            t.grad = torch.tensor(np.asarray(gl))
        torch.nn.utils.clip_grad_norm_(tensors, max_norm)
        opt.step()
    for t, o in zip(tensors, jax.tree_util.tree_leaves(ours)):
        assert_close_norm(np.asarray(o), t.detach().numpy(), OPTIM_REL)


def test_fc_lr5_groups():
    params = _params(np.random.default_rng(0))
    m = optim.param_multipliers(params, dict(fc_lr5=True))
    assert m['cls_head']['fc_cls']['kernel'] == (5.0, 1.0)
    assert m['cls_head']['fc_cls']['bias'] == (10.0, 0.0)
    assert m['backbone']['conv1']['bn']['scale'] == (1.0, 0.0)
    assert m['backbone']['conv1']['conv']['kernel'] == (1.0, 1.0)
    plain = optim.param_multipliers(params, dict(norm_decay_mult=0.0))
    assert plain['backbone']['conv1']['bn']['bias'] == (1.0, 0.0)
    assert plain['cls_head']['fc_cls']['bias'] == (1.0, 1.0)


def test_frozen_stages_get_no_update():
    params = _params(np.random.default_rng(0))
    is_frozen = optim.frozen_filter({'backbone': {'frozen_stages': 0}})
    assert is_frozen('backbone.conv1.conv.kernel') and not is_frozen('backbone.layer1.0.x')
    grads = jax.tree.map(jnp.ones_like, params)
    tx = optim.build_optimizer(dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9,
                                                   weight_decay=1e-4)),
                               params, optax.constant_schedule(0.1), is_frozen)
    updates, _ = tx.update(grads, tx.init(params), params)
    assert not np.any(np.asarray(updates['backbone']['conv1']['conv']['kernel']))
    assert np.all(np.asarray(updates['cls_head']['fc_cls']['kernel']) != 0)


def test_multistep_with_warmup():
    sched = optim.build_schedule(
        [dict(type='LinearLR', start_factor=0.1, begin=0, end=2, by_epoch=True,
              convert_to_iter_based=True),
         dict(type='MultiStepLR', begin=0, end=10, by_epoch=True, milestones=[4, 8], gamma=0.1)],
        base_lr=1.0, steps_per_epoch=10, max_epochs=10)
    expected = {0: 0.1, 10: 0.55, 20: 1.0, 39: 1.0, 40: 0.1, 79: 0.1, 80: 0.01, 99: 0.01}
    for step, lr in expected.items():
        # base_lr times a factor (each a product or quotient of a few float32 values).
        assert_close_ulps(sched(step), lr, 4, err_msg=f'step {step}')


def test_cosine_and_step_boundaries():
    sched = optim.build_schedule([dict(type='CosineAnnealingLR', T_max=4, begin=0, end=4)],
                                 base_lr=2.0, steps_per_epoch=3, max_epochs=4)
    # by epoch: constant within an epoch, cosine across epochs, 0 at T_max.
    got = [float(sched(s)) for s in (0, 2, 3, 6, 9, 12)]
    # float32 cos and a few products of values <= 2: a few eps of 2, cos(pi) not exactly -1.
    assert_close_norm(got, [2.0, 2.0, 1 + np.cos(np.pi / 4), 1.0, 1 + np.cos(3 * np.pi / 4), 0.0],
                      4 * EPS32)
    with pytest.raises(KeyError, match='PolyLR'):
        optim.build_schedule([dict(type='PolyLR')], 1.0, 1, 1)(0)


def test_linear_scaling_rule():
    assert optim.scaled_lr(0.01, 64, dict(enable=True, base_batch_size=256)) == 0.0025
    assert optim.scaled_lr(0.01, 64, dict(enable=False, base_batch_size=256)) == 0.01


def test_partial_bn_freezes_all_but_the_first_norm():
    is_frozen = optim.frozen_filter({'backbone': {'partial_bn': True}})
    assert not is_frozen('backbone.conv1.bn.scale')
    assert is_frozen('backbone.layer1.0.conv1.bn.scale')
    assert is_frozen('backbone.layer2.0.downsample.bn.bias')
    assert not is_frozen('backbone.layer1.0.conv1.conv.kernel')
    assert not is_frozen('cls_head.fc_cls.kernel')


def test_partial_bn_clips_only_the_trained_parameters():
    """MMAction2 clips the parameters that receive gradients (requires_grad and a grad), so
    partial_bn's frozen norms stay out of the global norm: the same update as torch's SGD and
    clip_grad_norm_ over the trainable tensors only."""
    rng = np.random.default_rng(1)
    params = _params(rng)
    params['backbone']['layer1'] = {'0': {'conv1': {'bn': {'scale': rng.normal(size=(4,)),
                                                           'bias': rng.normal(size=(4,))}}}}
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    is_frozen = optim.frozen_filter({'backbone': {'partial_bn': True}})
    # Large frozen gradients: counted in the norm, they would shrink every other update.
    grads = jax.tree_util.tree_map_with_path(
        lambda p, a: jnp.full_like(a, 1e3) if is_frozen(optim.path_str(p))
        else jnp.asarray(rng.normal(size=a.shape), jnp.float32), params)
    lr, max_norm = 0.1, 1.0
    tx = optim.build_optimizer(dict(optimizer=dict(type='SGD', lr=lr, momentum=0.9),
                                    clip_grad=dict(max_norm=max_norm)),
                               params, optax.constant_schedule(lr), is_frozen)
    ours = optax.apply_updates(params, tx.update(grads, tx.init(params), params)[0])

    leaves = jax.tree_util.tree_leaves_with_path(params)
    frozen = [is_frozen(optim.path_str(p)) for p, _ in leaves]
    assert any(frozen) and not all(frozen)
    tensors = [torch.tensor(np.asarray(v), requires_grad=not f) for (_, v), f in zip(leaves, frozen)]
    trainable = [t for t in tensors if t.requires_grad]
    for t, g in zip(tensors, jax.tree_util.tree_leaves(grads)):
        if t.requires_grad:
            t.grad = torch.tensor(np.asarray(g))
    torch.nn.utils.clip_grad_norm_(trainable, max_norm)
    torch.optim.SGD(trainable, lr=lr, momentum=0.9).step()
    # One clipped SGD step: float32 rounding of a few elementwise ops on values of order 1.
    for t, o in zip(tensors, jax.tree_util.tree_leaves(ours)):
        np.testing.assert_allclose(np.asarray(o), t.detach().numpy(), rtol=1e-6, atol=1e-6)
