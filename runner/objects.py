"""Object storage: `s3://bucket/prefix` URLs on AWS S3 and the stores that speak
its protocol (MinIO, Ceph RGW, GCS through its S3 interface), for the cache
(runner/cache/remote.py), the inputs (runner/inputs.py) and a sharded run's
records (runner/jobs.py).

Requests go through obstore (the Python binding of Rust's object_store): about
0.5 ms of client CPU a request where the AWS SDK for Python takes 3 ms, and no
second to start. On a cold cache run that CPU is taken from the models
(BENCHMARKS.md, "Object storage").

Endpoint, region and credentials come from where the AWS SDK looks: the AWS_*
environment variables (AWS_ENDPOINT_URL for MinIO and the like); otherwise
botocore's own chain (AWS_PROFILE, ~/.aws/config and ~/.aws/credentials, SSO,
a container, pod or instance role), asked once per process and refreshed.
obstore's runtime does not survive a fork: a process that used it must start
new processes (spawn), as Hydra's launchers, Ray and submitit do.
Requests are retried with exponential back-off (throttling answers and an
unreachable store included), AWS_MAX_ATTEMPTS attempts in all. Errors are one
line naming the endpoint and the bucket, never a credential: messages are ours,
and any text that comes from the client is scrubbed of the session's keys."""
from __future__ import annotations

import hashlib
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator, TypeVar

from runner.errors import RunnerError

SCHEME = "s3://"
# Requests in flight at once (reads and writes of cache entries, leases, input
# images): a chunk's lookups or a pose batch's leases in one or two round trips,
# where a network's round trip is tens of milliseconds; S3 takes thousands of
# requests a second per prefix.
CONCURRENCY = 64
MAX_ATTEMPTS = 5  # the AWS SDKs' default is 3; a store under load deserves a little more
CHUNK_BYTES = 1 << 20  # a video is streamed to disk in pieces of this size
DELETE_BATCH = 1000  # DeleteObjects takes 1000 keys a request

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


def attempts() -> int:
    """Attempts a request gets in all (AWS_MAX_ATTEMPTS when set)."""
    return max(1, int(os.environ.get("AWS_MAX_ATTEMPTS", MAX_ATTEMPTS)))


class NoCredentials(Exception):
    """No credentials anywhere the AWS SDK looks."""


@dataclass(frozen=True)
class Settings:
    """Where the store is and who asks, resolved once per process."""
    endpoint: str  # "" for AWS itself
    region: str
    keys: dict | None  # static keys (obstore's access_key_id, secret_access_key, token)
    provider: Callable[[], dict] | None  # else refreshable ones, from botocore's chain

    def url(self) -> str:
        return self.endpoint or f"https://s3.{self.region}.amazonaws.com"

    def secrets(self) -> list[str]:
        found = dict(self.keys or {})
        if self.provider is not None:
            try:
                found = self.provider()
            except Exception:
                found = {}
        return [v for k, v in found.items() if k in ("access_key_id", "secret_access_key", "token") and v]


def _from_environment() -> Settings | None:
    """The AWS_* variables alone, when nothing else could change what the SDK
    would use (no profile named, no config file): the quick way, no botocore."""
    env = os.environ
    config = Path(env.get("AWS_CONFIG_FILE", "~/.aws/config")).expanduser()
    if not (env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY")) or \
            env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE") or config.exists():
        return None
    keys = {"access_key_id": env["AWS_ACCESS_KEY_ID"], "secret_access_key": env["AWS_SECRET_ACCESS_KEY"]}
    if env.get("AWS_SESSION_TOKEN"):
        keys["token"] = env["AWS_SESSION_TOKEN"]
    ignored = env.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true"
    return Settings("" if ignored else env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or "",
                    env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1", keys, None)


def _from_botocore() -> Settings:
    """botocore's chain: profiles, config and credential files, SSO, roles."""
    import botocore.session
    from botocore.configprovider import ConfiguredEndpointProvider
    from botocore.exceptions import BotoCoreError
    session = botocore.session.Session()
    try:
        credentials = session.get_credentials()
        region = session.get_config_variable("region") or "us-east-1"
        endpoint = None
        if not session.get_config_variable("ignore_configured_endpoint_urls"):
            endpoint = ConfiguredEndpointProvider(full_config=session.full_config,
                                                  scoped_config=session.get_scoped_config(),
                                                  client_name="s3").provide()
    except BotoCoreError as err:  # a profile that does not exist, a broken config file
        raise RunnerError(f"AWS configuration: {err}") from None
    if credentials is None:
        return Settings(endpoint or "", region, None, None)

    from botocore.credentials import RefreshableCredentials
    refreshed = isinstance(credentials, RefreshableCredentials)

    def provide() -> dict:
        # botocore hands out refreshable credentials with at least 10 minutes left;
        # obstore asks again once fewer than 5 remain by this account (every 5 minutes)
        frozen = credentials.get_frozen_credentials()
        return {"access_key_id": frozen.access_key, "secret_access_key": frozen.secret_key, "token": frozen.token,
                "expires_at": datetime.now(timezone.utc) + timedelta(minutes=10) if refreshed else None}
    return Settings(endpoint or "", region, None, provide)


_made: dict = {}  # "settings": this process's Settings
_stores: dict = {}  # bucket name: its S3Store
_making = threading.Lock()


def settings() -> Settings:
    with _making:
        if "settings" not in _made:
            _made["settings"] = _from_environment() or _from_botocore()
        return _made["settings"]


def store(bucket: str):
    """This process's obstore S3Store for `bucket` (thread-safe; one connection pool).
    Raises NoCredentials when there are none."""
    found = settings()
    if found.keys is None and found.provider is None:
        raise NoCredentials()
    with _making:
        if bucket not in _stores:
            from obstore.store import S3Store
            retry = {"max_retries": attempts() - 1, "retry_timeout": timedelta(minutes=3),
                     "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=15),
                                 "base": 2.0}}
            # a stalled connection fails after a minute without a byte (and is retried); a
            # request as a whole may take long: a video streamed from the bucket
            client = {"allow_http": found.endpoint.startswith("http://"), "connect_timeout": "10s",
                      "read_timeout": "60s", "timeout": "24h"}
            # S3Store also reads AWS_* variables of its own (AWS_ENDPOINT, AWS_CONDITIONAL_PUT,
            # AWS_SKIP_SIGNATURE...): what it may take from them is given here instead
            _stores[bucket] = S3Store(bucket, region=found.region, endpoint=found.url(), conditional_put="etag",
                                    skip_signature=False, virtual_hosted_style_request=False,
                                    client_options=client, retry_config=retry, credential_provider=found.provider,
                                    **(found.keys or {}))
        return _stores[bucket]


def forget_client() -> None:
    """Make the next request resolve settings and build stores anew (from the environment as it is then)."""
    with _making:
        _made.clear()
        _stores.clear()


def endpoint() -> str:
    try:
        return redact(settings().url())
    except RunnerError:
        return "the configured endpoint"


def scrub(text: str) -> str:
    """`text` without the session's access key, secret key or token (client messages may quote them)."""
    text = redact(text)
    try:
        secrets = settings().secrets()
    except Exception:
        return text
    for secret in sorted(secrets, key=len, reverse=True):  # a key may be a part of another
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


def _code(err: Exception) -> str:
    """The S3 error code the store answered (<Code>...</Code>), if any."""
    found = re.search(r"<Code>([^<]+)</Code>|\(code: (\w+)\)", str(err))  # the second: DeleteObjects' per-key errors
    return (found.group(1) or found.group(2)) if found else ""


def _status(err: Exception) -> int:
    found = re.search(r"status code: (\d{3})", str(err))
    return int(found.group(1)) if found else 0


REFUSED = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken", "InvalidToken",
           "TokenRefreshRequired", "AllAccessDisabled", "Forbidden"}
THROTTLED = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests"}


def failure(err: Exception, bucket: str, what: str) -> StorageError:
    """One line for a client error while doing `what` on `bucket`."""
    from obstore.exceptions import InvalidPathError, PermissionDeniedError, UnauthenticatedError
    if isinstance(err, RunnerError):  # already one line (a broken AWS profile)
        return err if isinstance(err, StorageError) else StorageError(str(err))
    where = f"s3://{bucket} at {endpoint()}"
    if isinstance(err, NoCredentials):
        return StorageError(f"no credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                            "AWS_PROFILE, or ~/.aws/credentials (or give this machine a role)")
    code, status = _code(err), _status(err)
    if code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException") or \
            "incorrectly configured region" in str(err):
        return StorageError(f"{where} is in another region than {settings().region} (the client does not follow "
                            f"redirects): set AWS_REGION to the bucket's region")
    if isinstance(err, (PermissionDeniedError, UnauthenticatedError)) or code in REFUSED or status in (401, 403):
        return StorageError(f"{where} refused the credentials ({code or status}) while {what}: check "
                            "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and the bucket's policy",
                            refused=True)
    if code == "NoSuchBucket":
        return StorageError(f"bucket {bucket} does not exist at {endpoint()}: create it (aws s3 mb s3://{bucket}) "
                            "or fix the URL")
    if code in THROTTLED or status in (429, 503):
        return StorageError(f"{where} kept throttling requests ({code or status}) while {what}, after "
                            f"{attempts()} attempts: everything finished so far is kept; run "
                            "the same command again to go on (AWS_MAX_ATTEMPTS allows more attempts)")
    if isinstance(err, (InvalidPathError, ValueError)):  # ValueError: a key the caller gave
        bad = re.search(r'[Pp]ath "([^"]*)"', str(err))
        return StorageError(f"{where}: the object {bad.group(1) if bad else '?'} has a key with an empty or '.' "
                            f"part, which the client cannot address, while {what}: rename it or pass a prefix "
                            "without it")
    if status:
        return StorageError(f"{where} answered {code or status} while {what}: everything finished so far is kept; "
                            "run the same command again to go on")
    from obstore.exceptions import BaseError
    if isinstance(err, BaseError):  # no answer: refused connection, timeout, unknown host
        return StorageError(f"cannot reach the object store at {endpoint()} (s3://{bucket}) while {what}, after "
                            f"{attempts()} attempts: is it running and reachable? Everything finished so "
                            "far is kept; run the same command again to go on")
    return StorageError(scrub(f"{where}: {type(err).__name__} while {what}: {err}").splitlines()[0])


def _missing(err: Exception) -> bool:
    """A 404 for the object (not for the bucket)."""
    from obstore.exceptions import NotFoundError
    return (isinstance(err, NotFoundError) or _status(err) == 404) and _code(err) != "NoSuchBucket"


class Bucket:
    """The requests pose-runner makes of one bucket; each client error becomes a StorageError line."""

    def __init__(self, name: str):
        self.name = name

    def _failure(self, err: Exception, what: str) -> StorageError:
        return failure(err, self.name, what)

    def check(self, probe: str = "") -> None:
        """The bucket exists and these credentials may use it (before any model
        runs): a read of an object that need not exist under `probe` (a prefix)."""
        import obstore
        key = "/".join(p for p in (probe.strip("/"), ".pose-runner-check") if p)
        try:
            obstore.get(store(self.name), key, options={"range": (0, 1)})
        except Exception as err:
            if _code(err) != "NoSuchKey":  # S3's own answer; not a proxy's or another service's 404
                raise self._failure(err, "opening the bucket") from None

    def get(self, key: str, first: int | None = None) -> tuple[bytes, datetime] | None:
        """(the object's bytes (its `first` bytes), when it was last written), or None when there is none."""
        import obstore
        try:
            found = obstore.get(store(self.name), key, options={"range": (0, first)} if first else None)
            return bytes(found.bytes()), found.meta["last_modified"]
        except Exception as err:
            if _missing(err):
                return None
            raise self._failure(err, f"reading {key}") from None

    def put(self, key: str, data: bytes, only_new: bool = False) -> bool:
        """Write an object whole (readers see the old one or the new one);
        `only_new`: only if there is none yet (S3's conditional write,
        If-None-Match: *). False when it was there already."""
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError
        try:
            obstore.put(store(self.name), key, data, mode="create" if only_new else "overwrite")
            return True
        except Exception as err:
            # object_store reports a 412, and any 409 (another conditional write in
            # flight), as AlreadyExistsError: "there already" only for a conditional write
            if only_new and isinstance(err, (AlreadyExistsError, PreconditionError)):
                return False
            raise self._failure(err, f"writing {key}") from None

    def touch(self, key: str, data: bytes) -> None:
        """Mark the object used now: its own bytes written again (S3 has no
        cheaper way: a copy onto itself needs the SDK's metadata directive)."""
        try:
            self.put(key, data)
        except StorageError:
            pass  # a read-only bucket: the mark only orders `gc`

    def delete(self, keys: list[str]) -> None:
        import obstore
        for at in range(0, len(keys), DELETE_BATCH):
            chunk = keys[at:at + DELETE_BATCH]
            try:
                obstore.delete(store(self.name), chunk)
            except Exception as err:
                if not _missing(err):
                    raise self._failure(err, f"removing {len(chunk)} objects") from None

    def list(self, prefix: str, recursive: bool = True) -> Iterator[ObjectInfo]:
        """Every object under `prefix` (a folder-like prefix ending with /);
        not `recursive`: only those directly under it."""
        import obstore
        try:
            if recursive:
                for batch in obstore.list(store(self.name), prefix or None, chunk_size=1000):
                    for entry in batch:
                        yield ObjectInfo(entry["path"], int(entry["size"]), entry["last_modified"])
            else:
                for entry in obstore.list_with_delimiter(store(self.name), prefix or None)["objects"]:
                    yield ObjectInfo(entry["path"], int(entry["size"]), entry["last_modified"])
        except Exception as err:
            raise self._failure(err, f"listing {prefix or '/'}") from None

    def exists(self, key: str) -> ObjectInfo | None:
        import obstore
        try:
            found = obstore.head(store(self.name), key)
        except Exception as err:
            if _missing(err):
                return None
            raise self._failure(err, f"looking up {key}") from None
        return ObjectInfo(key, int(found["size"]), found["last_modified"])

    def download(self, key: str, out: BinaryIO) -> str:
        """Stream the object into `out` in CHUNK_BYTES pieces; its sha256."""
        import obstore
        digest = hashlib.sha256()
        try:
            for piece in obstore.get(store(self.name), key).stream(min_chunk_size=CHUNK_BYTES):
                digest.update(piece)
                out.write(piece)
        except Exception as err:
            raise self._failure(err, f"reading {key}") from None
        return digest.hexdigest()
