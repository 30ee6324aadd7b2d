"""Only the optional C extensions; the package's metadata is in pyproject.toml."""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.bdist_wheel import bdist_wheel

# The C extensions only speed up CPU hot spots (memoria/native.py). They are optional: where one cannot be built
# (no compiler), the install goes on and memoria computes the same values with torch ops (it warns at import).
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


class Wheel(bdist_wheel):
    """A wheel tagged for one Python and platform only when a compiled extension is in it.

    setuptools tags every wheel of a project that declares extensions for the building machine (``cp311-cp311-
    linux_x86_64``), even when none of them built: such a wheel holds only Python code, yet pip would refuse it on any
    other platform. Without a compiled extension it is tagged ``py3-none-any``, which is what it is.
    """

    def run(self) -> None:
        if not self.skip_build:
            build_ext = self.reinitialize_command("build_ext")
            build_ext.inplace = False
            self.run_command("build")  # bdist_wheel.run does not build again
            built = [ext.name for ext in build_ext.extensions if os.path.exists(build_ext.get_ext_fullpath(ext.name))]
            if not built:
                self.root_is_pure = True
                self.distribution.ext_modules = []  # so that install puts the modules at the wheel's root (purelib)
                self.warn("no C extension built (no C compiler?): a pure-Python wheel (memoria then uses torch ops)")
        super().run()


setup(ext_modules=extensions, cmdclass={"bdist_wheel": Wheel})
