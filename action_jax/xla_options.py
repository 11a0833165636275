"""Compiler options for the programs this package jit-compiles (a jit's `compiler_options`).

jaxlib 0.10 runs convolutions, matrix products and reductions on YNNPACK by default. On x86-64
XLA's own (Eigen) convolution kernels were faster for our networks, at batch 1 as in training:
TSN-R50 inference 1x8x224² 0.37 -> 0.29 s, its train step 1.95 -> 1.26 s (benchmarks/RESULTS.md,
2-core Intel Xeon with AVX-512); YNNPACK's convolutions keep ~1.5 of 2 cores busy, Eigen's
~1.9. Outputs agree within float32 rounding (another kernel sums in another order). Only
XLA:CPU reads the option; other machines (ARM: not measured), a jaxlib without it, or an
XLA_FLAGS that already sets it keep XLA's default.
"""
from __future__ import annotations

import functools
import os
import platform

import jax

_OPTION = 'xla_cpu_experimental_ynn_fusion_type'
# jaxlib 0.10.2's default YNNPACK fusions less one: matrix products and reductions (BatchNorm
# statistics, gradient sums) stay on YNNPACK, convolutions go to Eigen. (An empty list, all on
# XLA's own kernels, made the TSN train step 1.8x slower than this.)
_EIGEN_CONVOLUTIONS = {
    _OPTION: 'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE'}


@functools.cache
def compiler_options() -> dict[str, str]:
    """The options to pass as `jax.jit(..., compiler_options=...)`."""
    if (platform.machine().lower() not in ('x86_64', 'amd64')
            or _OPTION in os.environ.get('XLA_FLAGS', '')):
        return {}
    try:  # jaxlib releases before YNNPACK have no such option
        jax.jit(lambda: 0, compiler_options=_EIGEN_CONVOLUTIONS).lower().compile()
    except jax.errors.JaxRuntimeError:
        return {}
    return _EIGEN_CONVOLUTIONS


def jit(fun, **kwargs):
    """`jax.jit(fun, **kwargs)` with `compiler_options()`; call it when the program is
    built, not at import (the probe initialises JAX's backend)."""
    return jax.jit(fun, compiler_options=compiler_options(), **kwargs)
