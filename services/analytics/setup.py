"""The analytics hot path is a C extension (src/stockpipe/analytics/_kernel.c): building this
package needs a C compiler and Python's headers (Debian: gcc, python3-dev)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "stockpipe.analytics._kernel",
            ["src/stockpipe/analytics/_kernel.c"],
            # No fused multiply-add and no fast-math: the kernel's values must be the
            # reference's bit for bit, on every machine.
            extra_compile_args=["-O2", "-ffp-contract=off", "-fno-fast-math", "-std=c11"],
        )
    ],
)
