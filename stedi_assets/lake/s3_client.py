"""The one S3 configuration (lake/aws.py) as boto3, delta-rs and Arrow each take it (the same
attempts, timeouts, endpoint, region and credentials), and failed boto3 calls as errors naming
the bucket and key without a secret. On boto3, not dagster-aws's S3Resource: the lake is used
without Dagster, and S3Resource has no timeouts and takes keys as (visible) configuration."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import boto3
import botocore
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
)

from stedi_assets.lake.errors import AUTH_CODES, AUTH_HINT, AwsRequestError, without_userinfo

# A request that got no answer, or a body cut off after the response headers arrived (then
# botocore has already returned, and the retry is S3Store.read's).
TRANSPORT_ERRORS = (ConnectionError, HTTPClientError, IncompleteReadError)


def new_client(service: str, max_attempts: int, timeout_seconds: float, anonymous: bool) -> Any:
    """A boto3 client for `service` (s3, glue): timeouts, so a stalled call is retried instead
    of hanging; botocore's "standard" retries with backoff, `max_attempts` counting the first.
    Profile, region, endpoint and keys come from the standard AWS chain."""
    config = Config(
        retries={"total_max_attempts": max_attempts, "mode": "standard"},
        connect_timeout=timeout_seconds,
        read_timeout=timeout_seconds,
    )
    if anonymous:
        config = config.merge(Config(signature_version=botocore.UNSIGNED))
    # botocore reads AWS_DEFAULT_REGION only; the AWS CLI and other SDKs read AWS_REGION.
    return boto3.session.Session().client(service, region_name=os.environ.get("AWS_REGION") or None, config=config)


# One client per process and setting: making one parses the service model (a fraction of a
# second), and the lake is opened many times per step. Clients are thread-safe.
shared_client = functools.lru_cache(maxsize=None)(new_client)


@contextmanager
def reported(action: str, target: str, max_attempts: int) -> Iterator[None]:
    """Re-raise a failed AWS call as `AwsRequestError("<action> <target> failed ...")`."""
    try:
        yield
    except (BotoCoreError, ClientError) as error:
        # botocore's own message quotes the endpoint URL, credentials included: chained as the
        # cause, it would reach the console and Dagster's event log past the masked message.
        cause = error if without_userinfo(str(error)) == str(error) else None
        raise AwsRequestError(f"{action} {target} failed{_describe(error, max_attempts)}") from cause


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _describe(error: Exception, max_attempts: int) -> str:
    """The service's error code and message only: never the request, its headers or signature."""
    attempts = 1
    if isinstance(error, ClientError):
        code = error_code(error) or "error"
        text = f"{code}: {error.response.get('Error', {}).get('Message') or 'no message'}"
        attempts += error.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
        if code in AUTH_CODES:
            text += f"; {AUTH_HINT}"
    elif isinstance(error, NoCredentialsError):
        text = f"no AWS credentials found; {AUTH_HINT} (a public source bucket needs STEDI_SOURCE_ANONYMOUS=true)"
    else:
        text = str(error)
        if isinstance(error, TRANSPORT_ERRORS):
            attempts = max_attempts  # retried (by botocore, or S3Store.read for a body) until out of attempts
    if attempts > 1:
        return f" after {attempts} attempts (STEDI_S3_MAX_ATTEMPTS): {text}"
    return f": {text}"


def delta_storage_options(client: Any, max_attempts: int, timeout_seconds: float) -> dict[str, str]:
    """delta-rs's storage options (Rust object_store's names; `max_retries` counts retries,
    not attempts) for the endpoint, region and credentials `client` resolved through
    botocore's chain, with the same attempts and timeouts. Arrow's client (`arrow_s3`) is
    built from them too. The credentials are a frozen copy: take one per lake opened."""
    options = {
        "AWS_REGION": client.meta.region_name or "us-east-1",
        "max_retries": str(max(max_attempts - 1, 0)),
        "timeout": f"{timeout_seconds:g}s",
        "connect_timeout": f"{timeout_seconds:g}s",
    }
    endpoint = client.meta.endpoint_url
    host = (endpoint or "").split("://", 1)[-1].split("/", 1)[0]
    if endpoint and not host.endswith((".amazonaws.com", ".amazonaws.com.cn")):  # not AWS's own
        options["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    credentials = boto3.session.Session().get_credentials()  # the chain the clients use
    if credentials is None:
        raise AwsRequestError(f"S3 access to the lake failed: no AWS credentials found; {AUTH_HINT}")
    frozen = credentials.get_frozen_credentials()
    options |= {"AWS_ACCESS_KEY_ID": frozen.access_key, "AWS_SECRET_ACCESS_KEY": frozen.secret_key}
    if frozen.token:
        options["AWS_SESSION_TOKEN"] = frozen.token
    return options


def arrow_s3(options: Mapping[str, str]) -> Any:
    """Arrow's S3 filesystem with the access delta-rs was given (`delta_storage_options`)."""
    from pyarrow import fs

    endpoint = options.get("AWS_ENDPOINT_URL")
    return fs.S3FileSystem(
        access_key=options.get("AWS_ACCESS_KEY_ID"),
        secret_key=options.get("AWS_SECRET_ACCESS_KEY"),
        session_token=options.get("AWS_SESSION_TOKEN"),
        region=options.get("AWS_REGION"),
        endpoint_override=endpoint.split("://", 1)[-1] if endpoint else None,
        scheme="http" if endpoint and endpoint.startswith("http://") else "https",
        retry_strategy=fs.AwsStandardS3RetryStrategy(max_attempts=int(options.get("max_retries", "4")) + 1),
        connect_timeout=float(options.get("connect_timeout", "30s").rstrip("s")),
        request_timeout=float(options.get("timeout", "30s").rstrip("s")),
    )
