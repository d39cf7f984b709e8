"""Typed errors of the preprocessors: what was wrong, what was received, how to fix it."""

from __future__ import annotations


class PreprocessorError(ValueError):
    """Base class of every error raised by :mod:`preprocessors`."""


class ImageInputError(PreprocessorError):
    """An input image that cannot be processed (shape, size, values, empty batch)."""


class ParameterError(PreprocessorError):
    """A preprocessor parameter outside its valid range."""
