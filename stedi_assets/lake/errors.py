"""The lake's errors: one line saying what failed and where, never a secret. delta-rs's S3
errors (Rust object_store) are a coloured chain of causes ending in the store's XML body (for
a bad signature, the signed string): `describe` keeps the operation, the `s3://bucket/key`,
the attempts, the error code and message, and a hint for credential errors, as
lake/s3_client.py does for boto3's."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable

# The userinfo of a URL (`http://user:password@host`): everything between `scheme://` and the
# last `@` before the host's end. Written by hand: urllib parses one URL, not URLs inside text.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s\"'<>]*@")


def without_userinfo(text: str) -> str:
    """`text` with the credentials of every URL in it masked (`http://***@host/...`): an
    endpoint or location setting (AWS_ENDPOINT_URL, STEDI_LAKE, STEDI_SOURCE) may carry a
    user and password, and messages quote those URLs (botocore's and delta-rs's included)."""
    return _USERINFO.sub(r"\g<scheme>***@", text)


class LakeError(RuntimeError):
    """A lake operation that cannot go on; the message is for the user as it is, without any
    URL's credentials, whoever composed it."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(without_userinfo(a) if isinstance(a, str) else a for a in args))


class TableNotPublishedError(LakeError, LookupError):
    """The table has no committed version yet."""


class DamagedTableError(LakeError):
    """A table whose log or data files cannot be read."""


class CommitConflictError(LakeError):
    """Another writer committed since the version this change was built on: nothing was
    published; building again on the new version succeeds."""


class AwsRequestError(LakeError):
    """An S3 or Glue call that failed for good (not retryable, or out of attempts), naming
    the bucket and key (or Glue table)."""

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CHAIN = re.compile(r"\s*\n\s*↳\s*")
_REQUEST = re.compile(r"Error performing (\w+) (\S+?)(?: in [\d.]+\w*s)?(?:,|\s-|$)")
_RETRIES = re.compile(r"after (\d+) retries")
_STATUS = re.compile(r"status code: (\d{3})\b")
_CODE = re.compile(r"<Code>([^<]*)</Code>")
_MESSAGE = re.compile(r"<Message>([^<]*)</Message>")
# Codes (S3's, Glue's) for which the usual cause is the caller's credentials or permissions.
AUTH_CODES = frozenset({
    "403", "AccessDenied", "AccessDeniedException", "ExpiredToken", "InvalidAccessKeyId", "InvalidClientTokenId",
    "InvalidToken", "SignatureDoesNotMatch", "TokenRefreshRequired", "UnrecognizedClientException",
})
AUTH_HINT = (
    "check the AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the instance role) "
    "and their permissions"
)
_MAX_TEXT = 400


def flatten(text: str) -> str:
    """delta-rs's message on one line (a conflict's help is a second one), without colour codes."""
    return " ".join(_CHAIN.sub(": ", _ANSI.sub("", text)).split())


def is_request_error(error: BaseException) -> bool:
    """An S3 request that failed (as opposed to a table that is not there or not valid)."""
    text = flatten(str(error))
    return "Error performing" in text or "S3 error" in text


_TRANSPORT = ("operation timed out", "error sending request", "connection closed", "connection reset", "broken pipe")


def is_transport_error(error: BaseException) -> bool:
    """A request that got no answer (timed out, connection lost): the store may or may not
    have acted on it."""
    text = flatten(str(error)).lower()
    return "error performing" in text and not _STATUS.search(text) and any(t in text for t in _TRANSPORT)


def describe(error: BaseException, bucket: str | None = None, secrets: Iterable[str] = ()) -> str:
    """`error` in one line: `S3 GET s3://bucket/key failed after 5 attempts
    (STEDI_S3_MAX_ATTEMPTS): 500 InternalError: ...`, or delta-rs's message flattened."""
    text = flatten(str(error))
    requests = _REQUEST.findall(text)
    if requests:
        method, url = requests[-1]
        retries = _RETRIES.search(text)
        attempts = int(retries.group(1)) + 1 if retries else 1
        status = _STATUS.search(text)
        code = _CODE.search(text)
        message = _MESSAGE.search(text)
        if code or status:
            reason = " ".join(p for p in (status and status.group(1), code and code.group(1)) if p)
            if message:
                reason += f": {message.group(1)}"
        else:
            reason = text.rsplit(": ", 1)[-1]  # the innermost cause: "operation timed out"
        if (code and code.group(1) in AUTH_CODES) or (status and status.group(1) in {"401", "403"}):
            reason += f"; {AUTH_HINT}"
        after = f" after {attempts} attempts (STEDI_S3_MAX_ATTEMPTS)" if attempts > 1 else ""
        out = f"S3 {'LIST' if 'list-type=' in url else method} {_s3_uri(url, bucket)} failed{after}: {reason}"
    else:
        out = text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + " ..."
    for secret in secrets:
        if secret:
            out = out.replace(secret, "***")
    return out


def _s3_uri(url: str, bucket: str | None) -> str:
    """The object (or a listing's prefix) a path-style or virtual-hosted URL names, as `s3://bucket/key`."""
    parts = urllib.parse.urlsplit(url)
    path = urllib.parse.unquote(parts.path.lstrip("/"))
    query = urllib.parse.parse_qs(parts.query)
    host = parts.hostname or ""
    if bucket and host.startswith(f"{bucket}."):
        found, key = bucket, path
    else:
        found, _, key = path.partition("/")
    if "prefix" in query:
        key = query["prefix"][0]
    return f"s3://{found}/{key}" if found else url
