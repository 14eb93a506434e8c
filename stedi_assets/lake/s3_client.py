"""boto3 clients through dagster-aws's S3Resource, with the timeouts and the attempt bound the
lake needs; and failed calls turned into errors that name the bucket and key (or Glue table)
and never carry a secret."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
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
from dagster_aws.s3 import S3Resource

from stedi_assets.lake.errors import AwsRequestError

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
    "check the AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the instance role) "
    "and their permissions"
)


class BoundedS3Resource(S3Resource):
    """dagster-aws's S3Resource, plus: connect and read timeouts, so a stalled call fails and
    is retried instead of hanging; `max_attempts` bounding every call, the first included
    (S3Resource hands it to botocore as the number of *retries*); and clients of other
    services (Glue) made the same way. Left unset, profile, region, endpoint and keys come
    from the standard AWS chain."""

    timeout_seconds: float = 30.0

    def get_client(self) -> Any:
        return self.client("s3")

    def client(self, service: str) -> Any:
        # botocore "standard" retries: throttling, 5xx and connection errors, with jittered
        # exponential backoff and a retry quota.
        config = Config(
            retries={"total_max_attempts": self.max_attempts, "mode": "standard"},
            connect_timeout=self.timeout_seconds,
            read_timeout=self.timeout_seconds,
        )
        if self.use_unsigned_session:
            config = config.merge(Config(signature_version=botocore.UNSIGNED))
        return boto3.session.Session(profile_name=self.profile_name).client(
            service,
            # botocore reads AWS_DEFAULT_REGION only; the AWS CLI and other SDKs read AWS_REGION.
            region_name=self.region_name or os.environ.get("AWS_REGION") or None,
            endpoint_url=self.endpoint_url,
            use_ssl=self.use_ssl,
            verify=self.verify,
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
            aws_session_token=self.aws_session_token,
            config=config,
        )


def new_client(service: str, max_attempts: int, timeout_seconds: float, anonymous: bool) -> Any:
    resource = BoundedS3Resource(max_attempts=max_attempts, timeout_seconds=timeout_seconds, use_unsigned_session=anonymous)
    return resource.client(service)


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
            text += f"; {_AUTH_HINT}"
    elif isinstance(error, NoCredentialsError):
        text = f"no AWS credentials found; {_AUTH_HINT} (a public source bucket needs STEDI_SOURCE_ANONYMOUS=true)"
    else:
        text = str(error)
        if isinstance(error, (ConnectionError, HTTPClientError, IncompleteReadError)):
            attempts = max_attempts  # retried (by botocore, or S3Store.read for a body) until out of attempts
    if attempts > 1:
        return f" after {attempts} attempts (STEDI_S3_MAX_ATTEMPTS): {text}"
    return f": {text}"


def delta_storage_options(client: Any, max_attempts: int, timeout_seconds: float) -> dict[str, str]:
    """delta-rs's storage options for the endpoint, region and credentials `client` resolved
    through botocore's chain, with the same bound on attempts and the same timeouts.

    The names are those of Rust's object_store crate, which delta-rs hands them to:
    `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP` (plain http for that endpoint), `AWS_REGION`, the
    keys and `AWS_SESSION_TOKEN`; `max_retries` counts retries, not attempts; `timeout`
    bounds a whole request and `connect_timeout` its connection, both as durations ("30s").
    With an endpoint of its own object_store addresses buckets path-style. Arrow's client
    (delta.arrow_s3) is built from the same options. The credentials are a frozen copy:
    callers take a fresh one for each lake they open."""
    options = {
        "AWS_REGION": client.meta.region_name or "us-east-1",
        "max_retries": str(max(max_attempts - 1, 0)),
        "timeout": f"{timeout_seconds:g}s",
        "connect_timeout": f"{timeout_seconds:g}s",
    }
    endpoint = client.meta.endpoint_url
    if endpoint and not _is_aws_endpoint(endpoint):
        options["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    credentials = boto3.session.Session().get_credentials()  # the chain the clients use
    if credentials is None:
        raise AwsRequestError(f"S3 access to the lake failed: no AWS credentials found; {_AUTH_HINT}")
    frozen = credentials.get_frozen_credentials()
    options["AWS_ACCESS_KEY_ID"] = frozen.access_key
    options["AWS_SECRET_ACCESS_KEY"] = frozen.secret_key
    if frozen.token:
        options["AWS_SESSION_TOKEN"] = frozen.token
    return options


def _is_aws_endpoint(endpoint: str) -> bool:
    host = endpoint.split("://", 1)[-1].split("/", 1)[0]
    return host.endswith(".amazonaws.com") or host.endswith(".amazonaws.com.cn")
