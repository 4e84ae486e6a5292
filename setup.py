"""Packaging that pyproject.toml cannot say: ship the top-level ``prompts/`` and ``data/`` folders as
the packages ``autointerp.prompts`` and ``autointerp.data`` (read through ``autointerp.resources``).
Everything else is in pyproject.toml."""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages(include=["autointerp*"]), "autointerp.prompts", "autointerp.data"],
    package_dir={"autointerp.prompts": "prompts", "autointerp.data": "data"},
)
