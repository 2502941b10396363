"""Exceptions with messages fit for a one-line report.

Every error a user can cause by giving bad input derives from :class:`RetargetError`; the CLI
prints ``<file>: <message>`` for these and never a traceback.
"""

from __future__ import annotations


class RetargetError(Exception):
  """Base class for errors caused by input (files, configs, options)."""

  def __init__(self, message: str, path: str | None = None):
    super().__init__(message)
    self.message = message
    self.path = path

  def __str__(self) -> str:
    return f"{self.path}: {self.message}" if self.path else self.message


class InputFormatError(RetargetError):
  """A file is not in the expected format, is truncated or holds invalid values."""


class SkeletonError(RetargetError):
  """A human skeleton cannot be mapped to the canonical joints."""


class RobotConfigError(RetargetError):
  """A robot config or MJCF is invalid or incomplete."""


class MotionFileError(RetargetError):
  """A robot motion file (.npz format 1) is missing keys or has wrong shapes."""
