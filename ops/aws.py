"""boto3 sessions and clients for eltops; AWS error translation."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError, ProfileNotFound

from ops.errors import AccessDenied, NotConfigured, OpsError
from ops.executor import pause

# botocore does not retry: `with_retries` does (tenacity, jittered backoff), so that retries are
# visible, counted once, and tested with injected throttling.
CLIENT_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 1}, max_pool_connections=64,
                       connect_timeout=10, read_timeout=60)
RETRY_ATTEMPTS = 8


@dataclass
class Aws:
    """A session plus the endpoint override; hands out cached clients."""

    session: boto3.session.Session
    endpoint_url: str | None = None

    def __post_init__(self):
        self._clients: dict[str, object] = {}

    def client(self, service: str):
        if service not in self._clients:
            from ops.local.calls import attach

            try:
                self._clients[service] = attach(self.session.client(
                    service, endpoint_url=self.endpoint_url, config=CLIENT_CONFIG
                ), who="eltops")
            except NoRegionError:
                raise NotConfigured(
                    "no AWS region: pass --region, set AWS_DEFAULT_REGION, or configure a profile"
                ) from None
        return self._clients[service]


def make_aws(*, profile: str | None, region: str | None, endpoint_url: str | None) -> Aws:
    try:
        session = boto3.session.Session(profile_name=profile, region_name=region)
    except ProfileNotFound:
        raise NotConfigured(f"AWS profile {profile!r} not found; check ~/.aws/config or drop --profile") from None
    return Aws(session=session, endpoint_url=endpoint_url)


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


THROTTLING_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
    "RequestThrottledException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
    "TooManyRequestsException", "RequestTimeout", "RequestTimeoutException", "InternalError",
    "InternalFailure", "ServiceUnavailable", "ServiceUnavailableException", "InternalServerError",
})


def is_retryable(exc: BaseException) -> bool:
    """Throttling and 5xx: worth a jittered retry."""
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return error_code(exc) in THROTTLING_CODES or status >= 500
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import ReadTimeoutError

    return isinstance(exc, BotoConnectionError | ReadTimeoutError)


def translate(exc: BaseException, *, action: str, resource: str) -> OpsError:
    """A boto error as an OpsError naming the permission (`action`) and the resource."""
    if isinstance(exc, NoCredentialsError):
        return NotConfigured(
            "no AWS credentials found: configure a profile (--profile), or run `eltops local up` and "
            "paste its export lines to use the embedded AWS"
        )
    code = error_code(exc)
    if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError",
                "InvalidClientTokenId", "UnrecognizedClientException", "ExpiredToken", "ExpiredTokenException"):
        return AccessDenied(
            f"AWS denied {action} on {resource} ({code}); grant the caller {action} on that resource"
            + (" or refresh your credentials" if "Token" in code or "Client" in code else "")
        )
    if code in ("NoSuchBucket",):
        bucket = resource.removeprefix("s3://").split("/", 1)[0]
        return OpsError(f"bucket {bucket} does not exist ({resource}): check the bucket option that named it "
                        "(--bucket, --silver-bucket, --from-inventory, --manifest, or $ELT_BRONZE_BUCKET / "
                        "$ELT_SILVER_BUCKET) and --region")
    if code in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
        return OpsError(f"queue {resource} does not exist (check the queue URL and --region)")
    if code == "ResourceNotFoundException":
        if action.startswith("dynamodb:"):
            return OpsError(f"table {resource} does not exist: check --table (or $ELT_LEDGER_TABLE) and --region")
        return OpsError(f"{resource} does not exist (check the name and --region)")
    return OpsError(f"{action} on {resource} failed: {_one_line(str(exc))}")


def _one_line(text: str) -> str:
    """An error as one line: an endpoint's HTML error page (moto's 500 for an API it lacks) loses its
    tags and line breaks, so the message stays readable on a terminal."""
    import re

    return re.sub(r"\s+", " ", re.sub(r"<!doctype[^>]*>|<[^>]+>", " ", text, flags=re.I)).strip()


def with_retries(fn, *, action: str, resource: str, attempts: int = RETRY_ATTEMPTS, max_wait: float = 10.0,
                 stop: threading.Event | None = None):
    """Call fn() retrying throttling and 5xx with jittered exponential backoff; other AWS errors
    become an OpsError naming `action` (the IAM permission) and `resource`. With `stop` (a pool's
    stop event) a back-off raises Cancelled as soon as it is set."""
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

    retrying = Retrying(retry=retry_if_exception(is_retryable), wait=wait_random_exponential(multiplier=0.05, max=max_wait),
                        stop=stop_after_attempt(attempts), reraise=True, sleep=lambda s: pause(stop, s))
    try:
        return retrying(fn)
    except (ClientError, NoCredentialsError) as exc:
        raise translate(exc, action=action, resource=resource) from exc
    except Exception as exc:
        if is_retryable(exc):
            raise OpsError(f"{action} on {resource} failed after {attempts} attempts: {exc}") from exc
        raise


def all_receive_attributes(sqs) -> dict[str, list[str]]:
    """ReceiveMessage arguments asking for every attribute. `MessageSystemAttributeNames` (which
    replaced the deprecated `AttributeNames`) reached botocore's model only in 2024: the oldest
    boto3 this project allows would refuse the request before sending it, so it is sent only where
    the client's model knows it; `AttributeNames` still works everywhere."""
    arguments = {"AttributeNames": ["All"], "MessageAttributeNames": ["All"]}
    if "MessageSystemAttributeNames" in sqs.meta.service_model.operation_model("ReceiveMessage").input_shape.members:
        arguments["MessageSystemAttributeNames"] = ["All"]
    return arguments


def send_batch(sqs, *, queue_url: str, entries: dict[str, dict], limiter, attempts: int = 8,
               sleep=None) -> dict[str, tuple[bool, str]]:
    """One SendMessageBatch of up to 10 entries (Id -> entry without its Id). Only the failed
    entries are sent again, with jittered backoff; a sender fault is final, AccessDenied is
    raised. Returns Id -> (sent, message id or the last error). The limiter's stop event (a
    pool's) ends the back-off with Cancelled."""
    stop = getattr(limiter, "stop", None)
    sleep = sleep or (lambda seconds: pause(stop, seconds))
    pending = dict(entries)
    results: dict[str, tuple[bool, str]] = {}
    last_error: dict[str, str] = {}
    for attempt in range(attempts):
        if not pending:
            break
        if attempt:
            sleep(random.uniform(0, min(10.0, 0.05 * 2**attempt)))
        limiter.acquire(len(pending))
        batch = [{"Id": i, **entry} for i, entry in pending.items()]
        try:
            response = with_retries(lambda b=batch: sqs.send_message_batch(QueueUrl=queue_url, Entries=b),
                                    action="sqs:SendMessage", resource=queue_url, stop=stop)
        except AccessDenied:
            raise
        except OpsError as exc:
            last_error.update({i: str(exc) for i in pending})
            continue
        for ok in response.get("Successful", []):
            pending.pop(ok["Id"])
            results[ok["Id"]] = (True, ok["MessageId"])
        for bad in response.get("Failed", []):
            last_error[bad["Id"]] = f"{bad.get('Code')}: {bad.get('Message')}"
            if bad.get("SenderFault"):  # will not succeed on retry
                pending.pop(bad["Id"])
                results[bad["Id"]] = (False, last_error[bad["Id"]])
    results.update({i: (False, last_error.get(i, "not sent")) for i in pending})
    return results


def require_queue(sqs, queue_url: str, *, option: str = "--queue-url") -> str:
    """The queue's ARN, or an OpsError naming the queue when it does not exist: checked before any
    work, so a typo is one clear error instead of every batch failing after its retries."""
    try:
        attributes = with_retries(lambda: sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"]),
                                  action="sqs:GetQueueAttributes", resource=queue_url, attempts=3)
    except AccessDenied:
        raise
    except OpsError as exc:
        if "does not exist" in str(exc):
            raise OpsError(f"{option} {queue_url}: the queue does not exist (check the name, the account and "
                           "--region; `aws sqs list-queues` shows what exists)") from None
        raise
    return attributes["Attributes"]["QueueArn"]
