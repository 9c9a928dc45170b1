"""t5x-sbs: distilling step-by-step with a T5X-style JAX/Flax trainer."""
from setuptools import find_packages, setup

# The pinned set that installs and imports together on Python 3.11 (see README). apache-beam
# (`t5x-sbs cache-tasks`, SeqIO's Beam cache) needs protobuf<7, so sentencepiece stays at 0.2.2:
# 0.2.3's bundled sentencepiece_model_pb2 is protobuf 7.36.1 gencode and refuses to load under a
# protobuf 6 runtime (convert/hf_export imports it); pip does not see this (no version bound in
# 0.2.3's metadata). Beam is imported only inside the functions that run it.
CORE = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "seqio==0.0.20",
    "clu==0.0.12",
    "tensorflow==2.21.0",
    "tensorflow-text==2.21.1",
    "tensorflow-datasets==4.9.10",
    "gin-config==0.5.0",
    "google-genai==3.4.0",
    "sentencepiece==0.2.2",
    "safetensors==0.8.0",
    "tensorboard==2.21.0",
    "importlib_resources==7.1.0",  # tensorflow-datasets imports it when preparing a dataset
    "tqdm==4.70.1",
    "matplotlib==3.11.2",
    "apache-beam==2.77.0",  # t5x-sbs cache-tasks: SeqIO preprocessing on Beam (DirectRunner here)
    "crcmod==1.7",  # Beam's fast GCS/HDFS checksums (Dataflow caches to gs://)
]
TEST = [
    "pytest==9.2.0",
    "pytest-timeout==2.4.0",
    "transformers==5.23.0",
    "torch==2.13.0",
]

setup(
    name="t5x-sbs",
    version="0.1.0",
    description="Distilling step-by-step: a T5X-style JAX/Flax trainer with an LLM teacher",
    python_requires=">=3.11",
    # The layout's top-level tasks/, gin/ and configs/ folders install inside the package
    # (t5x_sbs.tasks; gin and sweep files as package data under t5x_sbs/gin, t5x_sbs/configs), never
    # as a bare global `tasks`; t5x_sbs.gin_paths finds them, so an installed wheel runs anywhere.
    packages=find_packages(include=["t5x_sbs", "t5x_sbs.*"]) + ["t5x_sbs.tasks", "t5x_sbs.gin", "t5x_sbs.configs"],
    package_dir={"t5x_sbs.tasks": "tasks", "t5x_sbs.gin": "gin", "t5x_sbs.configs": "configs"},
    package_data={"t5x_sbs": ["**/*.json", "**/*.yaml", "**/*.txt"], "t5x_sbs.gin": ["**/*.gin"],
                  "t5x_sbs.configs": ["**/*.gin", "**/*.json"]},
    install_requires=CORE,
    extras_require={"test": TEST},
    entry_points={"console_scripts": ["t5x-sbs=t5x_sbs.cli:main"]},
)
