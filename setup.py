from setuptools import find_packages, setup

setup(
    name="paragraph_planning",
    version="0.1.0",
    description="Re-running four interpretability papers on real offline language models and ViTs.",
    packages=find_packages(include=["paragraph_planning", "paragraph_planning.*"]),
    package_data={"paragraph_planning.core": ["*.c"]},  # the fused statistics kernel, compiled on first use
    python_requires=">=3.10",
)
