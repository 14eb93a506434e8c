"""boto3 clients made as dagster-aws's S3Resource makes them (a session on the standard AWS
chain, dagster-aws's retry config), plus timeouts; and failed calls turned into errors that
name the bucket and key (or Glue table) and never carry a secret."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import botocore
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError, NoCredentialsError
from dagster_aws.utils import construct_boto_client_retry_config

from stedi_assets.lake.aws import AwsRequestError

# Codes for which the usual cause is the caller's credentials or permissions.
_AUTH_CODES = frozenset(
    {
        "403",
        "AccessDenied",
        "AccessDeniedException",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "InvalidToken",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
    }
)
_AUTH_HINT = (
    "check the AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, the instance role) "
    "and their permissions"
)


def new_client(service: str, max_attempts: int, timeout_seconds: float, anonymous: bool) -> Any:
    # dagster-aws's config: botocore "standard" retries (throttling, 5xx, connection errors,
    # jittered exponential backoff, a retry quota), at most max_attempts calls in all.
    config = construct_boto_client_retry_config(max_attempts).merge(
        Config(connect_timeout=timeout_seconds, read_timeout=timeout_seconds)
    )
    if anonymous:
        config = config.merge(Config(signature_version=botocore.UNSIGNED))
    # botocore itself reads AWS_DEFAULT_REGION only; the AWS CLI and other SDKs read AWS_REGION.
    region = os.environ.get("AWS_REGION") or None
    return boto3.session.Session().client(service, region_name=region, config=config)


# One client per process and setting: making one parses the service model (a fraction of a
# second), and the lake is opened many times per step. Clients are thread-safe.
shared_client = functools.lru_cache(maxsize=None)(new_client)


@contextmanager
def reported(action: str, target: str, max_attempts: int) -> Iterator[None]:
    """Re-raise a failed AWS call as `AwsRequestError("<action> <target> failed ...")`."""
    try:
        yield
    except (BotoCoreError, ClientError) as error:
        raise AwsRequestError(f"{action} {target} failed{_describe(error, max_attempts)}") from error


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _describe(error: Exception, max_attempts: int) -> str:
    """The service's error code and message only: never the request, its headers or signature."""
    attempts = 1
    if isinstance(error, ClientError):
        code = error_code(error) or "error"
        text = f"{code}: {error.response.get('Error', {}).get('Message') or 'no message'}"
        attempts += error.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
        if code in _AUTH_CODES:
            text += f" ({_AUTH_HINT})"
    elif isinstance(error, NoCredentialsError):
        text = f"no AWS credentials found ({_AUTH_HINT}; a public source bucket needs STEDI_SOURCE_ANONYMOUS=true)"
    else:
        text = str(error)
        if isinstance(error, (ConnectionError, HTTPClientError)):
            attempts = max_attempts  # botocore retries these until it runs out of attempts
    if attempts > 1:
        return f" after {attempts} attempts (STEDI_S3_MAX_ATTEMPTS): {text}"
    return f": {text}"
