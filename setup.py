"""Build the Cython extensions in ``ctas7/_core``.

Every ``ctas7/_core/*.pyx`` becomes ``ctas7._core.<name>``. Environment:

``CTAS7_NATIVE=1``
    compile with ``-march=native`` (the default build runs on any x86-64 and
    picks its SIMD variant at run time).
``CTAS7_DEBUG=1``
    turn Cython's bounds and wraparound checks back on and define CTAS7_DEBUG.
``CTAS7_EXTENSIONS=_ring,_kernels``
    build only these modules (handy while working on one kernel family).
"""

import os
import sys
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).parent
CORE = Path("ctas7") / "_core"

debug = os.environ.get("CTAS7_DEBUG") == "1"
native = os.environ.get("CTAS7_NATIVE") == "1"
only = {m for m in os.environ.get("CTAS7_EXTENSIONS", "").split(",") if m}

compile_args = ["-O3", "-fno-strict-aliasing", "-Wno-unused-function"]
if native:
    compile_args.append("-march=native")
macros = [
    ("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
    ("CTAS7_DEBUG", "1" if debug else "0"),
    ("CTAS7_NATIVE", "1" if native else "0"),
]

extensions = []
for pyx in sorted((HERE / CORE).glob("*.pyx")):
    if only and pyx.stem not in only:
        continue
    extensions.append(
        Extension(
            f"ctas7._core.{pyx.stem}",
            [str(CORE / pyx.name)],
            include_dirs=[str(CORE / "include"), str(CORE), np.get_include()],
            define_macros=macros,
            extra_compile_args=compile_args,
            libraries=["m"] if sys.platform.startswith("linux") else [],
        )
    )

directives = {
    "language_level": 3,
    "boundscheck": debug,
    "wraparound": debug,
    "initializedcheck": debug,
    "cdivision": True,
    "embedsignature": True,
}

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        include_path=[str(CORE)],
        nthreads=int(os.environ.get("CTAS7_BUILD_JOBS", "2")),
    ),
)
