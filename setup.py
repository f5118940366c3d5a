"""Builds the DTMF receiver's compiled kernels (``ivrsim/audio/dtmf_kernels.pyx``); the rest is in pyproject.toml."""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [
            Extension(
                "ivrsim.audio.dtmf_kernels",
                ["ivrsim/audio/dtmf_kernels.pyx"],
                include_dirs=["ivrsim/audio"],
                depends=["ivrsim/audio/dtmf_simd.h"],
                extra_compile_args=["-O3"],
            )
        ],
        compiler_directives={"language_level": "3"},
    )
)
