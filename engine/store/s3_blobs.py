"""SnapshotBlobs in an S3-compatible bucket (AWS S3, MinIO, Ceph, R2, ...) through boto3.

Why boto3: it is AWS's own maintained client, speaks to every S3-compatible server through an endpoint
URL, and reads endpoint, region and credentials the way every AWS tool does (AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, profiles, instance roles), so an operator configures nothing
aonode-specific. Keys are `<prefix>/chunks/<sha256>` and `<prefix>/snapshots/<name>`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from aonode.engine.errors import Busy, StartupRefused
from aonode.engine.store.blobs import Kind, Listed

PARALLEL = 16  # requests in flight: a restore reads hundreds of 64 KiB chunks
DELETE_BATCH = 1000  # the most keys one DeleteObjects takes
MISSING = {"NoSuchKey", "404", "NotFound"}


class S3Blobs:
    """Thread safe (boto3 clients are); requests run PARALLEL at a time on the instance's threads."""

    def __init__(self, client: BaseClient, bucket: str, prefix: str) -> None:
        self._s3 = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.where = f"s3://{bucket}/{self.prefix}"
        self._pool = ThreadPoolExecutor(max_workers=PARALLEL, thread_name_prefix="aonode-s3")

    @classmethod
    def open(cls, url: str) -> S3Blobs:
        """Connect and check that the bucket answers (StartupRefused with the reason if not)."""
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise StartupRefused(f"snapshot bucket must be s3://bucket[/prefix], not {url!r}")
        config = Config(
            retries={"max_attempts": 4, "mode": "standard"},
            max_pool_connections=PARALLEL,
            connect_timeout=10,
            read_timeout=60,
        )
        client = boto3.client("s3", config=config)
        try:
            client.head_bucket(Bucket=parsed.netloc)
        except (ClientError, BotoCoreError) as err:
            raise StartupRefused(f"cannot use snapshot bucket {url} ({client.meta.endpoint_url}): {err}") from err
        return cls(client, parsed.netloc, parsed.path)

    def _key(self, kind: Kind, name: str) -> str:
        return f"{self.prefix}/{kind.value}/{name}" if self.prefix else f"{kind.value}/{name}"

    def _call(self, what: str, fn: Callable[..., dict], **kwargs: object) -> dict:
        try:
            return fn(**kwargs)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in MISSING:
                raise
            raise Busy(f"snapshot bucket {self.where}: {what} failed ({err})") from err
        except BotoCoreError as err:
            raise Busy(f"snapshot bucket {self.where} is unavailable ({what}: {err})") from err

    def put(self, kind: Kind, items: Mapping[str, bytes]) -> None:
        def one(item: tuple[str, bytes]) -> None:
            self._call("put", self._s3.put_object, Bucket=self.bucket, Key=self._key(kind, item[0]), Body=item[1])

        list(self._pool.map(one, items.items()))

    def get(self, kind: Kind, names: Iterable[str]) -> dict[str, bytes]:
        def one(name: str) -> tuple[str, bytes | None]:
            try:
                answer = self._call("get", self._s3.get_object, Bucket=self.bucket, Key=self._key(kind, name))
            except ClientError:  # missing (anything else is Busy)
                return name, None
            return name, answer["Body"].read()

        return {name: body for name, body in self._pool.map(one, list(names)) if body is not None}

    def listing(self, kind: Kind) -> Iterator[Listed]:
        start = self._key(kind, "")
        pages = self._s3.get_paginator("list_objects_v2")
        try:
            for page in pages.paginate(Bucket=self.bucket, Prefix=start):
                for item in page.get("Contents", ()):
                    yield Listed(item["Key"][len(start) :], item["LastModified"].timestamp())
        except (ClientError, BotoCoreError) as err:
            raise Busy(f"snapshot bucket {self.where} cannot be listed ({err})") from err

    def delete(self, kind: Kind, names: Sequence[str]) -> None:
        for start in range(0, len(names), DELETE_BATCH):
            keys = [{"Key": self._key(kind, name)} for name in names[start : start + DELETE_BATCH]]
            self._call("delete", self._s3.delete_objects, Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})

    def close(self) -> None:
        self._pool.shutdown(wait=True)
