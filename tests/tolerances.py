"""The float comparison rules of the test suite, so that each comparison states its reason.

Results must hold on any x86-64 or ARM CPU. NumPy, OpenCV and XLA pick SIMD kernels by CPU,
so a float32 result may round differently there; a bound follows from the computation:

- `assert_close_ulps`: a few correctly rounded elementwise operations. Each rounds to within
  half an ulp, a kernel that keeps a constant in float32 instead of float64 adds one more
  rounding, so k operations differ by at most about k ulps of the result.
- `assert_close_norm`: sums in another order (a dot product, a conv, a batch mean, an
  all-reduce over devices or processes, another conv algorithm or runtime). The error of a
  K-term float32 sum scales with the size of its terms, not with the (possibly cancelled)
  result, so the bound is relative to the tensor's largest magnitude, not per element.
"""
import numpy as np

EPS32 = float(np.finfo(np.float32).eps)  # 2**-23: one ulp of 1.0 in float32
EPS_BF16 = 2.0**-7  # one ulp of 1.0 in bfloat16 (8 significant bits)

# A whole float32 network against another implementation of it (MMAction2's PyTorch, ONNX
# Runtime, TensorFlow), relative to the output's largest magnitude. Each layer's dot products
# (K up to ~5000 terms here) summed in another order, by other conv algorithms, differ by
# ~sqrt(K) eps ~ 1e-5 of their terms, and a few such layers add up to a few 1e-5; seen on a
# Xeon (AVX-512): <= 1.4e-6. A real mistake (a transposed kernel, swapped BatchNorm
# statistics, an off-by-one padding or frame) moves the output by 1e-2 or more.
NETWORK_REL = 1e-4
# The same float32 network as another XLA program on the same CPU (another batch shape, jit or
# not, rematerialised, in chunks, BatchNorm folded into the convs, Conv3d as 2D convs): sums
# tiled or fused otherwise, folded weights rounded once more. ~sqrt(K) eps of the terms per
# layer without the other implementation's algorithms; seen on a Xeon (AVX-512): <= 1.7e-6.
SAME_NETWORK_REL = 1e-5


def _max_abs(x) -> float:
    x = np.asarray(x, np.float64)
    return float(np.max(np.abs(x))) if x.size else 0.0


def assert_close_ulps(actual, desired, ulps: float, err_msg: str = ''):
    """|actual - desired| <= ulps * ulp(desired) elementwise, ulp in actual's float type."""
    actual = np.asarray(actual)
    dtype = actual.dtype if actual.dtype.kind == 'f' else np.dtype(np.float64)
    desired = np.asarray(desired)
    assert actual.shape == np.broadcast(actual, desired).shape, (actual.shape, desired.shape)
    ulp = np.spacing(np.abs(desired).astype(dtype)).astype(np.float64)
    err = np.abs(actual.astype(np.float64) - desired.astype(np.float64))
    worst = np.unravel_index(np.argmax(err - ulps * ulp), err.shape) if err.size else ()
    assert np.all(err <= ulps * ulp), (
        f'{err_msg} off by {float(np.max(err / ulp))} ulps > {ulps} (first worst at {worst}: '
        f'{actual[worst]!r} vs {np.broadcast_to(desired, actual.shape)[worst]!r})')


def assert_close_norm(actual, desired, rel: float, err_msg: str = ''):
    """max |actual - desired| <= rel * max |desired|: a bound on sum-order effects."""
    actual, desired = np.asarray(actual), np.asarray(desired)
    assert actual.shape == desired.shape, (err_msg, actual.shape, desired.shape)
    err = _max_abs(actual.astype(np.float64) - desired.astype(np.float64))
    scale = _max_abs(desired)
    assert err <= rel * scale, (
        f'{err_msg} max error {err:.3g} > {rel:.3g} * max|desired| {scale:.3g}')
