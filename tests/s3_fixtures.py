"""A real S3 server for the object-storage tests: moto's server mode on 127.0.0.1 (a free port), with a bucket,
and the AWS environment (endpoint, credentials, region) pointing at it while the fixture lasts."""

import uuid

import pytest

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # never ask an instance-metadata service for credentials
}


def s3_bucket():
    """Generator body of a fixture: the URI of a new, empty bucket (s3://NAME) on a server started for it."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    patch = pytest.MonkeyPatch()
    try:
        host, port = server.get_host_and_port()
        patch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        for key, value in S3_ENV.items():
            patch.setenv(key, value)
        name = f"raymeta-{uuid.uuid4().hex[:8]}"
        boto3.client("s3").create_bucket(Bucket=name)
        yield f"s3://{name}"
    finally:
        patch.undo()
        server.stop()


def s3_keys(bucket: str) -> list[str]:
    """Every object's key in the bucket, sorted, less the empty folder markers (``a/``) pyarrow leaves."""
    import boto3

    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket.removeprefix("s3://"))
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []) if not item["Key"].endswith("/"))
