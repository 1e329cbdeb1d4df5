"""Build the compiled kernels (Cython) with the C compiler on the machine; metadata: pyproject."""

from Cython.Build import cythonize
from setuptools import Extension, setup

KERNELS = [
    "dsaudit.sources.record_walk",
    "dsaudit.decode.packet_kernel",
    "dsaudit.decode.tls_wire",
    "dsaudit.decode.dns_wire",
    "dsaudit.flows.table_kernel",
    "dsaudit.naming.name_state",
    "dsaudit.flow_records.name_columns",
    "dsaudit.reports.json_text",
]

setup(
    ext_modules=cythonize(
        [
            Extension(name, [name.replace(".", "/") + ".pyx"], extra_compile_args=["-O3"])
            for name in KERNELS
        ],
        # No annotations or line tracing: the kernels must stay plain C on the hot path.
        compiler_directives={"language_level": 3, "embedsignature": True},
    ),
)
