"""Object storage: `s3://bucket/prefix` URLs on AWS S3 and the stores that speak
its protocol (MinIO, Ceph RGW, GCS through its S3 interface), for the cache
(runner/cache/remote.py), the inputs (runner/inputs.py) and a sharded run's
records (runner/jobs.py).

Endpoint, region and credentials come from where the AWS SDK looks: the
AWS_* environment variables (AWS_ENDPOINT_URL for MinIO and the like),
~/.aws/config and ~/.aws/credentials, an instance or pod role. Requests are
retried by botocore's own retry modes (standard: bounded attempts, exponential
back-off with jitter, throttling answers included; AWS_MAX_ATTEMPTS and
AWS_RETRY_MODE change them). Errors are one line naming the endpoint and the
bucket, never a credential: messages are ours, and any text that comes from
the SDK is scrubbed of the session's keys."""
from __future__ import annotations

import hashlib
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Callable, Iterable, Iterator, TypeVar

from runner.errors import RunnerError

SCHEME = "s3://"
# Requests of one batch in flight at once (reads and writes of cache entries,
# input images): enough to hide round trips, few enough to be polite to a store.
CONCURRENCY = 16
MAX_ATTEMPTS = 5  # botocore's default for its standard mode is 3; a store under load deserves a little more
CHUNK_BYTES = 1 << 20  # a video is streamed to disk in pieces of this size

T = TypeVar("T")
R = TypeVar("R")


class StorageError(RunnerError):
    """The object store could not be used (unreachable, refused, no bucket).
    `refused`: it turned these credentials away (a read-only bucket refuses writes)."""

    def __init__(self, message: str, refused: bool = False):
        super().__init__(message)
        self.refused = refused


_CREDENTIALS_IN_URL = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


def redact(text: str) -> str:
    """`text` with any user:password@ of a URL replaced by ***@."""
    return _CREDENTIALS_IN_URL.sub(r"\1***@", text)


def is_url(spec) -> bool:
    """Whether `spec` names an object in a store (s3://...)."""
    return str(spec).startswith(SCHEME)


def refuse_unsupported(key: str, spec) -> None:
    """A one-line refusal of a URL this layer cannot use: a cache in another
    scheme, and credentials written into an s3:// URL (they would land in
    manifests and logs; a stream's own URL, rtsp://user:pass@..., is OpenCV's)."""
    text = str(spec)
    scheme = re.match(r"([a-zA-Z][a-zA-Z0-9+.-]*)://", text)
    if not scheme:
        return
    if _CREDENTIALS_IN_URL.match(text) and (key == "cache.dir" or is_url(text)):
        raise RunnerError(f"{key}={redact(text)}: a URL must not carry credentials (they would be written into "
                          "manifests and logs); put them in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE "
                          "or ~/.aws/credentials")
    if key == "cache.dir" and scheme.group(1).lower() != "s3":
        raise RunnerError(f"cache.dir={text}: the cache can live in a folder or an s3:// bucket (AWS S3, MinIO, "
                          "Ceph RGW; Google Cloud Storage through its S3 interface: AWS_ENDPOINT_URL="
                          "https://storage.googleapis.com and HMAC keys)")


@dataclass(frozen=True)
class Location:
    bucket: str
    prefix: str  # no leading or trailing slash ("" for the bucket's root)

    @classmethod
    def of(cls, url: str) -> "Location":
        rest = str(url)[len(SCHEME):]
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise RunnerError(f"{url}: an s3:// URL names a bucket: s3://BUCKET/PREFIX")
        return cls(bucket, prefix.strip("/"))

    def key(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p)

    def url(self, key: str | None = None) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix if key is None else key}".rstrip("/")


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: datetime


def retries() -> dict:
    """botocore's retry settings: AWS_RETRY_MODE and AWS_MAX_ATTEMPTS when set."""
    return {"mode": os.environ.get("AWS_RETRY_MODE", "standard"),
            "max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS", MAX_ATTEMPTS))}


_made: dict = {}
_making = threading.Lock()


def _client():
    """(session, client), made once per process (importing boto3 and making a
    client take a second: runner/cache/remote.py starts it early)."""
    with _making:
        if not _made:
            import boto3
            from botocore.config import Config
            session = boto3.session.Session()
            # entries carry their own sha256 and inputs are hashed as read: no second checksum per request
            config = Config(retries=retries(), connect_timeout=10, read_timeout=60,
                            max_pool_connections=2 * CONCURRENCY, tcp_keepalive=True,
                            request_checksum_calculation="when_required",
                            response_checksum_validation="when_required")
            _made["client"] = session, session.client("s3", config=config)
        return _made["client"]


def forget_client() -> None:
    """Make the next request build a new client (from the environment as it is then)."""
    with _making:
        _made.clear()


def client():
    """This process's S3 client (thread-safe; one connection pool)."""
    return _client()[1]


def endpoint() -> str:
    return redact(client().meta.endpoint_url)


def scrub(text: str) -> str:
    """`text` without the session's access key, secret key or token (SDK messages may quote them)."""
    text = redact(text)
    try:
        credentials = _client()[0].get_credentials()
    except Exception:
        return text
    if credentials is not None:
        frozen = credentials.get_frozen_credentials()
        for secret in (frozen.access_key, frozen.secret_key, frozen.token):
            if secret:
                text = text.replace(secret, "***")
    return text


_pool: ThreadPoolExecutor | None = None
_pool_guard = threading.Lock()


def concurrently(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """[fn(item) ...] in order, at most CONCURRENCY requests in flight."""
    global _pool
    items = list(items)
    if len(items) < 2:
        return [fn(item) for item in items]
    with _pool_guard:
        if _pool is None:
            _pool = ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="objects")
    return list(_pool.map(fn, items))


def ordered_ahead(fn: Callable[[T], R], items: Iterable[T], ahead: int = CONCURRENCY) -> Iterator[R]:
    """fn(item) for each item, in order, with at most `ahead` of them in flight
    (and held) at once: bounded memory, round trips overlapped."""
    from collections import deque
    global _pool
    with _pool_guard:
        if _pool is None:
            _pool = ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="objects")
    pending: deque = deque()
    for item in items:
        pending.append(_pool.submit(fn, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _code(err) -> str:
    return str(err.response.get("Error", {}).get("Code", "")) if hasattr(err, "response") else ""


def _status(err) -> int:
    return int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)) if hasattr(err, "response") else 0


REFUSED = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken", "InvalidToken",
           "TokenRefreshRequired", "AllAccessDisabled", "AuthorizationHeaderMalformed", "Forbidden"}


def failure(err: Exception, bucket: str, what: str) -> StorageError:
    """One line for an SDK error while doing `what` on `bucket`."""
    from botocore.exceptions import (BotoCoreError, ClientError, ConnectionError as ConnectError,
                                     NoCredentialsError, PartialCredentialsError, ReadTimeoutError)
    where = f"s3://{bucket} at {endpoint()}"
    if isinstance(err, (NoCredentialsError, PartialCredentialsError)):
        return StorageError(f"no credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                            "AWS_PROFILE, or ~/.aws/credentials (or give this machine a role)")
    if isinstance(err, ClientError):
        code, status = _code(err), _status(err)
        if code in REFUSED or status == 403:
            return StorageError(f"{where} refused the credentials ({code or status}) while {what}: check "
                                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and the bucket's policy",
                                refused=True)
        if code == "NoSuchBucket" or (status == 404 and what == "opening the bucket"):
            return StorageError(f"bucket {bucket} does not exist at {endpoint()}: create it (aws s3 mb s3://{bucket}) "
                                "or fix the URL")
        if code in ("SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded") or status in (429, 503):
            return StorageError(f"{where} kept throttling requests ({code or status}) while {what}, after "
                                f"{retries()['max_attempts']} attempts: everything finished so far is kept; run "
                                "the same command again to go on (AWS_MAX_ATTEMPTS allows more attempts)")
        return StorageError(f"{where} answered {code or status} while {what}: everything finished so far is kept; "
                            "run the same command again to go on")
    if isinstance(err, (ConnectError, ReadTimeoutError)) or isinstance(err, BotoCoreError):
        return StorageError(f"cannot reach the object store at {endpoint()} (s3://{bucket}) while {what}, after "
                            f"{retries()['max_attempts']} attempts ({type(err).__name__}): is it running and "
                            "reachable? Everything finished so far is kept; run the same command again to go on")
    return StorageError(scrub(f"{where}: {type(err).__name__} while {what}: {err}").splitlines()[0])


class Bucket:
    """The requests pose-runner makes of one bucket; each SDK error becomes a StorageError line."""

    def __init__(self, name: str):
        self.name = name

    def _call(self, what: str, method: str, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError
        try:
            return getattr(client(), method)(Bucket=self.name, **kwargs)
        except (BotoCoreError, ClientError) as err:
            raise failure(err, self.name, what) from None

    def check(self) -> None:
        """The bucket exists and these credentials may use it (before any model runs)."""
        self._call("opening the bucket", "head_bucket")

    def get(self, key: str, first: int | None = None) -> tuple[bytes, datetime] | None:
        """(the object's bytes (its `first` bytes), when it was last written), or None when there is none."""
        from botocore.exceptions import BotoCoreError, ClientError
        try:
            answer = client().get_object(Bucket=self.name, Key=key,
                                         **({"Range": f"bytes=0-{first - 1}"} if first else {}))
            return answer["Body"].read(), answer["LastModified"]
        except ClientError as err:
            if _code(err) in ("NoSuchKey", "404") or _status(err) == 404:
                return None
            raise failure(err, self.name, f"reading {key}") from None
        except BotoCoreError as err:
            raise failure(err, self.name, f"reading {key}") from None

    def put(self, key: str, data: bytes, only_new: bool = False) -> bool:
        """Write an object whole (readers see the old one or the new one);
        `only_new`: only if there is none yet (S3's conditional write).
        False when it was there already."""
        from botocore.exceptions import BotoCoreError, ClientError
        try:
            client().put_object(Bucket=self.name, Key=key, Body=data, **({"IfNoneMatch": "*"} if only_new else {}))
            return True
        except ClientError as err:
            if only_new and (_status(err) in (409, 412) or _code(err) in ("PreconditionFailed",
                                                                          "ConditionalRequestConflict")):
                return False
            raise failure(err, self.name, f"writing {key}") from None
        except BotoCoreError as err:
            raise failure(err, self.name, f"writing {key}") from None

    def touch(self, key: str) -> None:
        """Mark the object used now (a copy onto itself; its bytes stay)."""
        from botocore.exceptions import BotoCoreError, ClientError
        try:
            client().copy_object(Bucket=self.name, Key=key, CopySource={"Bucket": self.name, "Key": key},
                                 MetadataDirective="REPLACE")
        except (BotoCoreError, ClientError):
            pass  # gone meanwhile, or a read-only bucket: the mark only orders `gc`

    def delete(self, keys: list[str]) -> None:
        for at in range(0, len(keys), 1000):  # DeleteObjects takes 1000 keys a request
            chunk = keys[at:at + 1000]
            self._call(f"removing {len(chunk)} objects", "delete_objects",
                       Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True})

    def list(self, prefix: str, recursive: bool = True) -> Iterator[ObjectInfo]:
        """Every object under `prefix` (a folder-like prefix ends with /), in key
        order; not `recursive`: only those directly under it."""
        from botocore.exceptions import BotoCoreError, ClientError
        pages = client().get_paginator("list_objects_v2").paginate(
            Bucket=self.name, Prefix=prefix, **({} if recursive else {"Delimiter": "/"}))
        try:
            for page in pages:
                for entry in page.get("Contents", []):
                    yield ObjectInfo(entry["Key"], int(entry["Size"]), entry["LastModified"])
        except (BotoCoreError, ClientError) as err:
            raise failure(err, self.name, f"listing {prefix or '/'}") from None

    def exists(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import BotoCoreError, ClientError
        try:
            answer = client().head_object(Bucket=self.name, Key=key)
        except ClientError as err:
            if _status(err) == 404:
                return None
            raise failure(err, self.name, f"looking up {key}") from None
        except BotoCoreError as err:
            raise failure(err, self.name, f"looking up {key}") from None
        return ObjectInfo(key, int(answer["ContentLength"]), answer["LastModified"])

    def download(self, key: str, out: BinaryIO) -> str:
        """Stream the object into `out` in CHUNK_BYTES pieces; its sha256."""
        from botocore.exceptions import BotoCoreError, ClientError
        digest = hashlib.sha256()
        try:
            body = client().get_object(Bucket=self.name, Key=key)["Body"]
            for piece in body.iter_chunks(CHUNK_BYTES):
                digest.update(piece)
                out.write(piece)
        except (BotoCoreError, ClientError) as err:
            raise failure(err, self.name, f"reading {key}") from None
        return digest.hexdigest()
