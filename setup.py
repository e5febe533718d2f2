from setuptools import find_packages, setup

with open("requirements.txt", encoding="utf-8") as f:
    requirements = [line.strip() for line in f if line.strip() and not line.startswith("#")]

setup(
    name="adaptformer",
    version="0.1.0",
    description="AdaptFormer and parameter-efficient fine-tuning of Vision Transformers in PaddlePaddle",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["adaptformer", "adaptformer.*"]),
    python_requires=">=3.9",
    install_requires=requirements,
    extras_require={"test": ["pytest"]},
)
