import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup

version = {}
exec(Path(__file__).parent.joinpath("memoria", "version.py").read_text(), version)

# The C extension only speeds up the CPU tie-break draw (memoria/draw.py). It is optional: where it cannot be built
# (no compiler), the install goes on and memoria draws the same values with torch ops.
mt19937 = Extension(
    "memoria._mt19937",
    sources=["memoria/_mt19937.c"],
    extra_compile_args=[] if sys.platform == "win32" else ["-O3"],
    optional=True,
)

setup(
    name="memoria-pytorch",
    version=version["__version__"],
    description="Memoria: a human-inspired memory architecture for neural networks (PyTorch)",
    long_description=Path(__file__).parent.joinpath("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["memoria", "memoria.*"]),
    ext_modules=[mt19937],
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
