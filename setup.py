"""Build the optional compiled random-walker kernel; everything else is configured in pyproject.toml.

Why a setup.py: setuptools declares C extensions here. The kernel is plain C loaded with ctypes (no Python
headers needed). It is optional: if no compiler (or no OpenMP) is found, the build retries without OpenMP and
then goes on without the kernel — the numpy solver in ``random_walker.py`` is used instead.
"""

from __future__ import annotations

import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OPENMP = ["-fopenmp"]


class OptionalBuildExt(build_ext):
    """Compile with OpenMP; without it if that fails; skip the kernel if even that fails."""

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
            return
        except Exception as e:  # noqa: BLE001 - any compiler failure: try the next variant
            print(f"WeakAnnotate: building {ext.name} with OpenMP failed ({e}); retrying without", file=sys.stderr)
        ext.extra_compile_args = [a for a in ext.extra_compile_args if a not in OPENMP]
        ext.extra_link_args = [a for a in ext.extra_link_args if a not in OPENMP]
        try:
            super().build_extension(ext)
        except Exception as e:  # noqa: BLE001
            print(f"WeakAnnotate: {ext.name} not built ({e}); the numpy solver will be used", file=sys.stderr)


kernel = Extension(
    "WeakAnnotateLib.methods.extreme_points._rw_kernel",
    sources=["WeakAnnotate/WeakAnnotateLib/methods/extreme_points/_rw_kernel.c"],
    extra_compile_args=["-O3", *OPENMP],
    extra_link_args=OPENMP,
)

setup(ext_modules=[kernel], cmdclass={"build_ext": OptionalBuildExt})
