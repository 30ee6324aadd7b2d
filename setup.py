"""Only the optional C extensions; the package's metadata is in pyproject.toml."""

import sys

from setuptools import Extension, setup

# The C extensions only speed up CPU hot spots (memoria/native.py). They are optional: where one cannot be built
# (no compiler), the install goes on and memoria computes the same values with torch ops.
extensions = [
    Extension(
        f"memoria.{name}",
        sources=[f"memoria/{name}.c"],
        depends=["memoria/_threads.h"],
        # warnings on, so that a new one shows in every build log (the sources build without any with GCC)
        extra_compile_args=[] if sys.platform == "win32" else ["-O3", "-Wall", "-Wextra"],
        optional=True,
    )
    for name in ("_mt19937", "_walk", "_counts")
]

setup(ext_modules=extensions)
