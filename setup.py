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
    extras_require={
        # nbclient, nbformat, ipykernel: tests/test_notebook.py and tools/run_notebook.py run docs/notebook.ipynb
        # (tried: nbclient 0.11.0, nbformat 5.11.1, ipykernel 7.4.0 on Python 3.11).
        # The ONNX packages too, so that the export tests run wherever the tests run (CI included).
        # scikit-learn: the digits task of tools/make_mini_vtab.py, so its test runs wherever the tests run.
        # av: the video tests write and decode real clips.
        "test": ["pytest", "nbclient", "nbformat", "ipykernel", "paddle2onnx>=2.1", "onnxruntime>=1.17",
                 "scikit-learn>=1.3", "av>=12", "scipy>=1.10"],
        # data.dataset svhn reads SVHN's .mat files with SciPy (tried: scipy 1.16 on Python 3.11).
        "svhn": ["scipy>=1.10"],
        # data.dataset video decodes with PyAV (FFmpeg inside its wheel); tried: av 18.1.0 on Python 3.11.
        "video": ["av>=12"],
        # tools/make_mini_vtab.py's digits task (scikit-learn ships the 1,797 8x8 digits).
        "mini": ["scikit-learn>=1.3"],
        # ONNX export (tools/export.py --onnx) and the onnxruntime benchmark; tried: paddle2onnx 2.1.0
        # (with onnx 1.17.0, onnxoptimizer 0.3.13) and onnxruntime 1.32.0 on Python 3.11, paddlepaddle 3.3.1.
        "onnx": ["paddle2onnx>=2.1", "onnxruntime>=1.17"],
    },
)
