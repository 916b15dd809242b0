"""Packaging for keras-resnets: `pip install -e ".[test]"` installs everything the tests need."""

from setuptools import find_packages, setup

setup(
    name="keras-resnets",
    version="0.1.0",
    description=(
        "Every ResNet, pre-activation ResNet and ResNeXt for Keras 3, with training "
        "(tf.data, the papers' recipes, tf.distribute) and Keras Tuner searches."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # bench/ and experiments/ run from the checkout (python -m bench.models, ...).
    packages=find_packages(include=["keras_resnets*", "training*", "tuning*"]),
    # The table of published weights (keras_resnets.list_weights()) is data, not code.
    package_data={"keras_resnets": ["weights.json"]},
    # TensorFlow is an extra: `pip install keras-resnets[jax]` (or [torch]) trains without it
    # (training.numpy_data feeds the Keras loop); [tensorflow] adds the tf.data pipeline, the
    # TensorFlow loop with tf.distribute, TFDS and the SavedModel / ONNX / LiteRT exports.
    install_requires=[
        "keras>=3.0",
        "numpy",
        "pillow",  # training.pil_images: decoding without TensorFlow
        "h5py",
        "absl-py",
        "keras-tuner>=1.4.7,<1.5",  # tuning/kt_adapter.py: the private API it uses
        "packaging",
        "scipy",
        "scikit-learn",  # KerasTuner's Bayesian optimisation
        "matplotlib",
        "grpcio",
        "protobuf",
        "psutil",
    ],
    extras_require={
        # pytest-xdist: the suite runs in 2 processes (pytest.ini), 1.5x faster on 2 cores.
        # The export packages: the tests run every export format in its own runtime.
        "test": ["tensorflow>=2.16", "tensorflow-datasets", "pytest>=7", "pytest-xdist>=3",
                 "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert"],
        "tensorflow": ["tensorflow>=2.16", "tensorflow-datasets"],
        "jax": ["jax"],  # the CPU wheel; on NVIDIA GPUs: pip install "jax[cuda12]"
        "torch": ["torch"],
        # --export_format=onnx needs tf2onnx (and onnx); onnxruntime and ai-edge-litert run
        # the ONNX and LiteRT files.
        "export": ["tf2onnx", "onnx", "onnxruntime", "ai-edge-litert"],
        "gpu": ["tensorflow[and-cuda]>=2.16", "tensorflow-datasets"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: Apache Software License",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
