"""A store's files on S3 (or any endpoint speaking its API): the ``StoreFS`` of ``s3://``.

Endpoint, region and credentials come from the standard AWS variables and files
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...), as every AWS tool reads them.

Objects are created with ``If-None-Match: *``: S3 answers 412 when the name exists, so an
object once written is never rewritten, whoever races for its name (AWS S3 since 2024; GCS and
Azure offer the same). That is the one primitive the write path needs: each writer PUTs its
own log objects and sealers race for ``seal/<epoch>`` names (``replay.store.seals``).
Through boto3, as pyarrow's S3 filesystem cannot send the header (measured: it was dropped
and the object overwritten).
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from replay.errors import NotFoundError, StoreError, UsageError
from replay.store.fs import Data, check_name

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client  # pragma: no cover
else:
    S3Client = Any

SCHEME = "s3://"
_MISSING = {"404", "NoSuchKey", "NotFound"}
_CLIENT: dict[tuple[int, bool], S3Client] = {}  # per process: boto3 clients are safe to share
_MAKING = threading.Lock()  # but not to create


def is_url(location: object) -> bool:
    return isinstance(location, str) and location.startswith(SCHEME)


def check_not_url(location: str) -> None:
    """UsageError for a folder name that is a URL of another kind (``gs://…``) or a
    mistyped ``s3:/…``: opened as a folder, it would create runs under ``./gs:/…``."""
    scheme, sep, _ = location.partition(":/")
    if sep and len(scheme) > 1 and scheme.replace("+", "").replace(".", "").isalnum():
        raise UsageError(
            f"{location!r} is not a store this tool can open",
            hint="a store is a folder or s3://BUCKET/PREFIX (S3 and compatible endpoints)",
        )


def _client(patient: bool = True) -> S3Client:
    """This process's client: retrying (``patient``), or trying once with short timeouts."""
    key = (os.getpid(), patient)
    client = _CLIENT.get(key)
    if client is None:
        with _MAKING:
            client = _CLIENT.get(key)
            if client is None:
                try:
                    import boto3  # imported by S3 stores only: 0.2 s
                    from botocore.config import Config
                except ImportError:
                    raise StoreError(
                        "a store on S3 needs boto3",
                        hint="pip install 'pipeline-replay[s3]'",
                    ) from None

                region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
                retries = {
                    "mode": "standard",
                    "max_attempts": 5 if patient else 0,
                }  # after the first
                timeouts = {} if patient else {"connect_timeout": 2, "read_timeout": 5}
                client = _CLIENT[key] = boto3.session.Session().client(
                    "s3",
                    region_name=region or "us-east-1",
                    config=Config(retries=retries, max_pool_connections=16, **timeouts),
                )
    return client


@dataclass(frozen=True)
class S3FS:
    """The objects under ``s3://bucket/prefix`` (equal, and hashed alike, for one place)."""

    bucket: str
    prefix: str  # "" or ending in "/"
    endpoint: str = field(default_factory=lambda: os.environ.get("AWS_ENDPOINT_URL", ""))

    @classmethod
    def of(cls, url: str) -> S3FS:
        bucket, _, prefix = url.removeprefix(SCHEME).partition("/")
        prefix = prefix.strip("/")
        if len(bucket) < 3 or (prefix and check_name(url, prefix) != prefix):
            raise StoreError(
                f"{url!r} names no S3 bucket",
                hint="write the store as s3://BUCKET/PREFIX (a bucket name has 3+ characters)",
            )
        return cls(bucket, prefix + "/" if prefix else "")

    @property
    def url(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}".rstrip("/")

    @property
    def identity(self) -> str:
        """One name for this place, whichever endpoint serves a bucket of this name."""
        return f"{self.endpoint}|{self.url}"

    def _key(self, path: str) -> str:
        return self.prefix + check_name(self.url, path)

    def where(self, path: str) -> str:
        return f"{SCHEME}{self.bucket}/{self._key(path)}"

    def exists(self, path: str) -> bool:
        try:
            self.size(path)
        except FileNotFoundError:
            return False
        return True

    def size(self, path: str) -> int:
        with self._calling(path):
            return int(
                _client().head_object(Bucket=self.bucket, Key=self._key(path))["ContentLength"]
            )

    def modified(self, path: str) -> int:
        """S3's Last-Modified of ``path``, in ns (S3's clock, whichever machine wrote it)."""
        with self._calling(path):
            answer = _client().head_object(Bucket=self.bucket, Key=self._key(path))
        return int(answer["LastModified"].timestamp()) * 10**9

    def list(self, folder: str) -> list[str]:
        """The names under ``folder``: its objects and its sub-folders, as ``ls`` shows them."""
        return sorted(self.names(folder))

    def names(
        self, folder: str, start_after: str = "", recursive: bool = False, starting: str = ""
    ) -> Iterator[str]:
        """The names under ``folder`` in order (after ``start_after``, a name in it; only
        those ``starting`` with a prefix), one LIST request per 1,000."""
        base = self._key(folder) + "/"
        args: dict[str, Any] = {"StartAfter": base + start_after} if start_after else {}
        if not recursive:
            args["Delimiter"] = "/"
        for page in self._pages(folder, starting, **args):
            for common in page.get("CommonPrefixes", ()):
                yield common["Prefix"][len(base) :].rstrip("/")
            for obj in page.get("Contents", ()):
                yield obj["Key"][len(base) :]

    def usage(self, folder: str) -> tuple[int, int]:
        """How many objects ``folder`` holds, and their bytes (one LIST per 1,000)."""
        count = size = 0
        for page in self._pages(folder):
            for obj in page.get("Contents", ()):
                count, size = count + 1, size + int(obj["Size"])
        return count, size

    def mtimes(self, folder: str) -> dict[str, int]:
        """The objects directly in ``folder`` and S3's Last-Modified of each (one LIST per
        1,000): S3's clock, whichever machine wrote them."""
        base = len(self._key(folder)) + 1
        return {
            obj["Key"][base:]: int(obj["LastModified"].timestamp()) * 10**9
            for page in self._pages(folder, Delimiter="/")
            for obj in page.get("Contents", ())
        }

    def _pages(self, folder: str, starting: str = "", **args: Any) -> Iterator[Any]:
        """The pages of a LIST of the keys under ``folder`` (``starting`` with a prefix),
        1,000 a page."""
        prefix = self._key(folder) + "/" + starting
        with self._calling(folder):
            pages = _client().get_paginator("list_objects_v2")
            yield from pages.paginate(Bucket=self.bucket, Prefix=prefix, **args)

    def changed(self, path: str) -> int:
        """A stamp of ``path``: its ETag (or, for a folder, its names), as an int; 0 when
        absent. S3 keeps no folder times, and an ETag changes with the bytes."""
        try:
            with self._calling(path):
                etag = _client().head_object(Bucket=self.bucket, Key=self._key(path))["ETag"]
            return hash(etag) or 1
        except FileNotFoundError:
            names = tuple(self.names(path))
            return (hash(names) or 1) if names else 0

    def read(self, path: str) -> bytes:
        with self._calling(path):
            body = _client().get_object(Bucket=self.bucket, Key=self._key(path))["Body"]
            return bytes(body.read())

    def read_range(self, path: str, offset: int, length: int) -> memoryview:
        from botocore.exceptions import ClientError

        if length <= 0:
            return memoryview(b"")
        with self._calling(path):
            try:
                body = _client().get_object(
                    Bucket=self.bucket,
                    Key=self._key(path),
                    Range=f"bytes={offset}-{offset + length - 1}",
                )["Body"]
            except ClientError as exc:
                if _code(exc) == "InvalidRange":  # from past the end: nothing there
                    return memoryview(b"")
                raise
            return memoryview(body.read())

    def read_tail(self, path: str, length: int) -> memoryview:
        """The last ``length`` bytes (all of a shorter object), in one request."""
        with self._calling(path):
            body = _client().get_object(
                Bucket=self.bucket, Key=self._key(path), Range=f"bytes=-{length}"
            )["Body"]
            return memoryview(body.read())

    def open_read(self, path: str, offset: int = 0) -> BinaryIO:
        size = self.size(path)
        return io.BytesIO(bytes(self.read_range(path, offset, size - offset)))

    @contextmanager
    def mapped(self, path: str) -> Iterator[bytes]:
        yield self.read(path)

    def put_if_absent(self, path: str, data: Data, *, patient: bool = True) -> bool:
        """Create ``path`` unless it exists (False then). ``patient=False``: one attempt with
        short timeouts, for what only saves work later, such as a writer's retirement at its
        process's exit (retried, an endpoint that is down held each exit ~17 s a writer)."""
        from botocore.exceptions import ClientError

        with self._calling(path):
            try:
                _client(patient).put_object(
                    Bucket=self.bucket, Key=self._key(path), Body=bytes(data), IfNoneMatch="*"
                )
            except ClientError as exc:
                if _code(exc) in ("PreconditionFailed", "412"):
                    return False
                raise
        return True

    def write_atomic(self, path: str, data: Data) -> None:
        with self._calling(path):
            _client().put_object(Bucket=self.bucket, Key=self._key(path), Body=bytes(data))

    def remove(self, path: str) -> None:
        """Delete the object at ``path`` if it is there (S3 answers alike if it is not)."""
        with self._calling(path):
            _client().delete_object(Bucket=self.bucket, Key=self._key(path))

    def remove_many(self, paths: Sequence[str]) -> None:
        """Delete the objects at ``paths`` (those there): one request per 1,000."""
        for start in range(0, len(paths), 1000):
            chunk = paths[start : start + 1000]
            with self._calling(chunk[0]):
                answer = _client().delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": self._key(p)} for p in chunk], "Quiet": True},
                )
            for error in answer.get("Errors", ())[:1]:
                raise StoreError(
                    f"S3 refused to delete {SCHEME}{self.bucket}/{error.get('Key')}: "
                    f"{error.get('Code')}",
                    hint="check the credentials (AWS_ACCESS_KEY_ID, AWS_PROFILE) and their rights",
                )

    def writable(self) -> bool:
        return True  # S3 says otherwise at the first PUT, with a message about credentials

    def check_bucket(self) -> None:
        try:
            with self._calling("FORMAT"):  # a missing bucket answers 404, as a missing key
                _client().head_bucket(Bucket=self.bucket)
        except FileNotFoundError:
            raise NotFoundError(
                f"no bucket {self.bucket!r} at {self.endpoint or 'AWS'}",
                hint="create the bucket, or check AWS_ENDPOINT_URL",
            ) from None

    @contextmanager
    def _calling(self, path: str) -> Iterator[None]:
        """S3's errors as the store's: a missing key is FileNotFoundError (as on a disk);
        anything else tells the user which endpoint refused what."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            yield
        except ClientError as exc:
            code = _code(exc)
            if code in _MISSING:
                raise FileNotFoundError(self.where(path)) from None
            if code == "NoSuchBucket":
                raise NotFoundError(
                    f"no bucket {self.bucket!r} at {self.endpoint or 'AWS'}",
                    hint="create the bucket, or check AWS_ENDPOINT_URL",
                ) from None
            raise StoreError(
                f"S3 refused {self.where(path)}: {code} ({exc})",
                hint="check the credentials (AWS_ACCESS_KEY_ID, AWS_PROFILE) and their rights",
            ) from None
        except NoCredentialsError:
            raise StoreError(
                f"no AWS credentials to read {self.where(path)}",
                hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE",
            ) from None
        except BotoCoreError as exc:
            raise StoreError(
                f"cannot reach S3 for {self.where(path)}: {exc}",
                hint="check AWS_ENDPOINT_URL and that the endpoint is up",
            ) from None


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
