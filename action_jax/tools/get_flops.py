"""Parameters and FLOPs of a config's model, per module and in total (MMAction2's get_flops).

    python -m action_jax.tools.get_flops configs/tsm_k400.py [--shape 1 3 8 224 224]
        [--max-depth 2]

FLOPs are counted as MMAction2 (mmengine/fvcore) counts them: multiply-accumulates (MACs) of
convolutions and matrix products, plus 2 per element of an eval-mode BatchNorm; activations,
pooling and additions are free. The count walks the model's jaxpr, traced on abstract values:
nothing is computed and no weights are allocated.

`--shape`: H (square) or H W: one test view's frames at that size; N C H W: N frames of a 2D
recognizer (TSN, TSM); N C T H W: N clips of T frames. Without it, one view of the config's
test pipeline: its clip_len x num_clips frames (2D) or clip_len frames (3D) at its crop size.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import math
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from action_jax.tools import load_config_arg, parse_args

Path = tuple[str, ...]
CROPS = ('CenterCrop', 'ThreeCrop', 'TenCrop')
RECOGNIZERS = ('Recognizer2D', 'Recognizer3D')


def _dot_macs(eqn) -> int:
    (lhs_contract, _), _ = eqn.params['dimension_numbers']
    lhs = eqn.invars[0].aval.shape
    return math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in lhs_contract)


def _conv_macs(eqn) -> int:
    # Each output element takes kernel_size x in_channels / groups MACs = kernel size / Cout.
    kernel = eqn.invars[1].aval.shape
    out_channels = kernel[eqn.params['dimension_numbers'].rhs_spec[0]]
    return math.prod(eqn.outvars[0].aval.shape) * math.prod(kernel) // out_channels


MAC_RULES = {'dot_general': _dot_macs, 'conv_general_dilated': _conv_macs}


def _subjaxprs(eqn):
    for value in eqn.params.values():
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(item, jax.extend.core.ClosedJaxpr):
                yield item.jaxpr
            elif isinstance(item, jax.extend.core.Jaxpr):
                yield item


def jaxpr_macs(jaxpr, scope: Path = (), times: int = 1,
               counts: collections.Counter | None = None) -> collections.Counter:
    """MACs of a jaxpr's convolutions and dot products by name-scope path, nested jaxprs
    (jit, remat, scan bodies times their length) included."""
    counts = collections.Counter() if counts is None else counts
    for eqn in jaxpr.eqns:
        path = scope + _split(str(eqn.source_info.name_stack).split('/'))
        rule = MAC_RULES.get(eqn.primitive.name)
        if rule is not None:
            counts[path] += times * rule(eqn)
        repeat = eqn.params.get('length', 1) if eqn.primitive.name == 'scan' else 1
        for sub in _subjaxprs(eqn):
            jaxpr_macs(sub, path, times * repeat, counts)
    return counts


def _call_owner(module) -> type | None:
    return next((c for c in type(module).__mro__ if '__call__' in c.__dict__), None)


def _split(scopes) -> Path:
    """A name stack's module path: scopes are split at '/', module names at '.'."""
    return tuple(p for scope in scopes for p in scope.split('.') if p)


@contextlib.contextmanager
def module_scopes(norm_flops: collections.Counter):
    """While active, `name(model)` gives every submodule call of `model` a jax.named_scope of
    its attribute name, so that jaxpr equations carry their module path; BatchNorm calls add
    their fvcore count (2 per output element in eval mode) to `norm_flops` by path."""
    names: dict[int, str] = {}
    stack: list[int] = []
    patched: dict[type, object] = {}

    def wrap(call):
        def scoped(self, *args, **kwargs):
            if id(self) not in names or (stack and stack[-1] == id(self)):  # super().__call__
                return call(self, *args, **kwargs)
            stack.append(id(self))
            try:
                with jax.named_scope(names[id(self)]):
                    out = call(self, *args, **kwargs)
            finally:
                stack.pop()
            if isinstance(self, nnx.BatchNorm):
                norm_flops[_split([*(names[i] for i in stack), names[id(self)]])] += 2 * out.size
            return out
        return scoped

    def name(model: nnx.Module) -> None:
        modules = dict(nnx.iter_modules(model))
        for path, module in modules.items():
            owner = _call_owner(module)
            if not path or owner is None:  # containers (nnx.List) are never called
                continue
            # Scopes nest by call: a block of layer1 (an nnx.List) is called by the backbone.
            caller = max((p for p in modules if path[:len(p)] == p != path
                          and _call_owner(modules[p])), key=len)
            names[id(module)] = '.'.join(str(p) for p in path[len(caller):])
            if owner not in patched:
                patched[owner] = owner.__dict__['__call__']
                owner.__call__ = wrap(patched[owner])

    try:
        yield name
    finally:
        for owner, call in patched.items():
            owner.__call__ = call


def model_complexity(model_cfg: Mapping, input_shape: Sequence[int]):
    """(parameters, FLOPs (MACs)) by module path of the model in eval mode on an input of
    `input_shape` (channels-last); `totals` sums them into the modules above."""
    from action_jax.models.builder import build_model
    model = nnx.eval_shape(lambda: build_model(dict(model_cfg), rngs=nnx.Rngs(0)))
    model.eval()
    params = collections.Counter()
    for path, param in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        params[tuple(str(p) for p in path[:-1])] += math.prod(param.shape)
    graphdef, state = nnx.split(model)
    norm_flops = collections.Counter()
    with module_scopes(norm_flops) as name:
        def forward(state, x):
            module = nnx.merge(graphdef, state)
            name(module)
            return module(x)
        closed = jax.make_jaxpr(forward)(state, jax.ShapeDtypeStruct(tuple(input_shape),
                                                                     jnp.float32))
    return params, jaxpr_macs(closed.jaxpr) + norm_flops


def totals(counts: Mapping[Path, int], max_depth: int) -> dict[Path, int]:
    """Counts summed into their ancestors up to `max_depth` levels; () is the whole model."""
    summed = collections.Counter()
    for path, n in counts.items():
        for depth in range(min(len(path), max_depth) + 1):
            summed[path[:depth]] += n
    return dict(summed)


def format_size(n: float) -> str:
    """MMAction2's units: 32.88G, 24.33M, 1.5K."""
    for unit, scale in (('T', 1e12), ('G', 1e9), ('M', 1e6), ('K', 1e3)):
        if abs(n) >= scale:
            return f'{n / scale:.2f}{unit}'
    return str(int(n))


def default_shape(config) -> tuple[int, ...]:
    """One test view of the config's test pipeline, channels-last."""
    pipeline = config.test_dataloader.dataset.get('pipeline') or []
    sample = next((t for t in pipeline if t.get('type') == 'SampleFrames'), None)
    crop = next((t['crop_size'] for t in reversed(pipeline) if t.get('type') in CROPS), None)
    if sample is None or crop is None:
        raise SystemExit('the test pipeline has no SampleFrames or crop: give --shape')
    size = (crop, crop) if isinstance(crop, int) else tuple(crop)[::-1]  # (w, h) -> (h, w)
    frames = sample.get('clip_len', 1)
    if config.model.get('type') != 'Recognizer3D':
        frames *= sample.get('num_clips', 1)
    return (1, frames, *size, 3)


def input_shape(config, shape: Sequence[int] | None) -> tuple[int, ...]:
    """MMAction2's --shape conventions (NCHW / NCTHW) turned channels-last."""
    view = default_shape(config) if not shape or len(shape) < 4 else None
    if not shape:
        return view
    if len(shape) in (1, 2):
        h, w = (shape[0], shape[0]) if len(shape) == 1 else shape
        return (*view[:-3], h, w, 3)
    if len(shape) == 4:  # N frames of a 2D recognizer
        n, c, h, w = shape
        return (1, n, h, w, c)
    if len(shape) == 5:
        n, c, t, h, w = shape
        return (n, t, h, w, c)
    raise SystemExit(f'--shape {" ".join(map(str, shape))}: give 1, 2, 4 or 5 numbers')


def table(params: Mapping[Path, int], flops: Mapping[Path, int], max_depth: int) -> str:
    params, flops = totals(params, max_depth), totals(flops, max_depth)
    rows = sorted(set(params) | set(flops), key=lambda p: [str(x).zfill(4) for x in p])
    lines = [f'{"module":<40}{"#params":>12}{"#flops (MACs)":>16}']
    for path in rows:
        label = '  ' * max(len(path) - 1, 0) + ('.'.join(path[-1:]) or 'model')
        lines.append(f'{label:<40}{format_size(params.get(path, 0)):>12}'
                     f'{format_size(flops.get(path, 0)):>16}')
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='config file (.py with get_config())')
    parser.add_argument('--shape', type=int, nargs='+',
                        help='input size as MMAction2: H | H W | N C H W | N C T H W')
    parser.add_argument('--max-depth', type=int, default=2, help='module levels in the table')
    args, overrides = parse_args(parser, argv)
    config = load_config_arg(args.config, overrides)
    if config.model.get('type') not in RECOGNIZERS:
        raise SystemExit(f'{args.config}: model type {config.model.get("type")!r}; get_flops '
                         f'counts recognizers ({", ".join(RECOGNIZERS)})')
    shape = input_shape(config, args.shape)
    try:
        params, flops = model_complexity(config.model.to_dict(), shape)
    except (TypeError, ValueError) as e:  # shapes the model cannot take
        raise SystemExit(f'{args.config}: input {shape}: {str(e).splitlines()[0]}') from None
    total_flops, total_params = sum(flops.values()), sum(params.values())
    print(table(params, flops, args.max_depth))
    line = '=' * 30
    print(f'\n{line}\nInput shape: {shape} (N, views or frames, H, W, C)\n'
          f'Flops: {format_size(total_flops)} (multiply-accumulates, as MMAction2)\n'
          f'Params: {format_size(total_params)}\n{line}')
    return dict(flops=total_flops, params=total_params, shape=shape)


if __name__ == '__main__':
    main()
