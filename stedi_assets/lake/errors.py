"""The lake's errors: each message says what failed and where, and never carries a secret."""

from __future__ import annotations

import re

# The userinfo of a URL (`http://user:password@host`): everything between `scheme://` and the
# last `@` before the host's end. Written by hand: urllib parses one URL, not URLs inside text.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s\"'<>]*@")


def without_userinfo(text: str) -> str:
    """`text` with the credentials of every URL in it masked (`http://***@host/...`): an
    endpoint or location setting (AWS_ENDPOINT_URL, STEDI_LAKE, STEDI_SOURCE) may carry a
    user and password, and messages quote those URLs (botocore's and delta-rs's included)."""
    return _USERINFO.sub(r"\g<scheme>***@", text)


class LakeError(RuntimeError):
    """A lake operation that cannot go on; the message is meant for the user as it is, and
    is built here without any URL's credentials, whoever composed it."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(without_userinfo(a) if isinstance(a, str) else a for a in args))


class TableNotPublishedError(LakeError, LookupError):
    """The table has no committed version yet."""


class DamagedTableError(LakeError):
    """A table whose log or data files cannot be read."""


class CommitConflictError(LakeError):
    """A commit refused because another writer committed the table since the version this
    change was built on: nothing was published; building again on the new version succeeds."""


class UnsafeStoreError(LakeError):
    """An object store that does not honour conditional writes: Delta commits would be lost."""


class AwsRequestError(LakeError):
    """An S3 or Glue call that failed for good: not retryable, or out of attempts. The message
    names the bucket and key (or Glue table) and carries no secret."""
