import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup

version = {}
exec(Path(__file__).parent.joinpath("memoria", "version.py").read_text(), version)

# The C extensions only speed up three CPU hot spots (memoria/native.py). They are optional: where one cannot be built
# (no compiler), the install goes on and memoria computes the same values with torch ops.
extensions = [
    Extension(
        f"memoria.{name}",
        sources=[f"memoria/{name}.c"],
        depends=["memoria/_threads.h"],
        extra_compile_args=[] if sys.platform == "win32" else ["-O3"],
        optional=True,
    )
    for name in ("_mt19937", "_walk", "_counts", "_index")
]

setup(
    name="memoria-pytorch",
    version=version["__version__"],
    description="Memoria: a human-inspired memory architecture for neural networks (PyTorch)",
    long_description=Path(__file__).parent.joinpath("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["memoria", "memoria.*"]),
    ext_modules=extensions,
    install_requires=["torch>=2.0"],
    extras_require={
        "dev": [
            "pytest>=7",
            "hypothesis>=6",
            "black>=26,<27",
            "isort>=9,<10",
            "nbformat>=5",
            "nbclient>=0.7",
            "ipykernel",
        ],
        "visualize": ["matplotlib>=3.6", "pillow"],
        "plot": ["matplotlib>=3.6", "pillow"],
        "experiment": [  # keep in step with experiment/requirements.txt
            "transformers>=5.0,<6",
            "huggingface_hub>=1.0,<3",
            "tokenizers>=0.22,<1",
            "lightning>=2.4,<3",
            "tensorboard>=2.14",
            "tqdm>=4.64",
            "numpy>=1.24",
            "scipy>=1.10",
        ],
    },
    classifiers=[
        "License :: OSI Approved :: MIT License",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
