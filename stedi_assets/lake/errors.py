"""The lake's errors: each message says what failed and where, and never carries a secret."""

from __future__ import annotations


class LakeError(RuntimeError):
    """A lake operation that cannot go on; the message is meant for the user as it is."""


class TableNotPublishedError(LakeError, LookupError):
    """The table has no committed version yet."""


class DamagedTableError(LakeError):
    """A table whose log or data files cannot be read."""


class UnsafeStoreError(LakeError):
    """An object store that does not honour conditional writes: Delta commits would be lost."""


class AwsRequestError(LakeError):
    """An S3 or Glue call that failed for good: not retryable, or out of attempts. The message
    names the bucket and key (or Glue table) and carries no secret."""
