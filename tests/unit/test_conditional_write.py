"""conditional_write.py on one bucket of bare in-process moto: what `head` reads, the condition
`condition` builds, and `put_file`'s two paths (one PutObject up to the threshold, a multipart upload
above it) with and without a condition: which answers mean "look again" (PreconditionLost), which
errors pass through, and that a multipart upload that fails leaves no upload behind.

moto enforces If-Match / If-None-Match on PutObject but not on CompleteMultipartUpload: there the
test sends S3's own 412 (or 409, 404) answer through a botocore before-send hook, and checks the
headers the completion carried."""

from __future__ import annotations

import re

import boto3
import moto.s3.models
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.stub import ANY, Stubber
from moto import mock_aws

from lambdas.transform.conditional_write import Current, PreconditionLost, condition, head, put_file

REGION = "us-east-1"
BUCKET = "silver-bucket"
PART = 1 << 10  # the smallest part but the last, as moto is told below (S3's is 5 MiB: slow here)
NO_RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 1})
EXTRA = {"Metadata": {"source-key": "bronze/a.jsonl"}, "ContentType": "application/vnd.apache.parquet"}


@pytest.fixture(scope="module")
def aws():
    with mock_aws(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(moto.s3.models, "S3_UPLOAD_PART_MIN_SIZE", PART)  # moto refuses smaller parts but the last
        client = boto3.session.Session().client("s3", region_name=REGION, config=NO_RETRIES)
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def s3(aws):
    """The module's client, with this test's hooks taken off afterwards."""
    handlers = []
    real_register = aws.meta.events.register_first

    def register_first(name, handler, **kwargs):
        handlers.append((name, handler))
        return real_register(name, handler, **kwargs)

    aws.meta.events.register_first = register_first
    yield aws
    aws.meta.events.register_first = real_register
    for name, handler in handlers:
        aws.meta.events.unregister(name, handler)


@pytest.fixture
def key(request) -> str:
    return f"silver/{request.node.name}.parquet"


def a_file(tmp_path, size: int, name: str = "out") -> str:
    path = tmp_path / name
    path.write_bytes(bytes(i % 251 for i in range(size)))
    return str(path)


class _Body:
    def __init__(self, body: bytes):
        self.body = body

    def stream(self, *args, **kwargs):
        yield self.body


def refuse(s3, operation: str, *, status: int, code: str = "", times: int = 99) -> list:
    """S3's error answer to the first `times` `operation` calls (botocore parses it as it would
    S3's), instead of moto's. Returns the URLs of the refused requests."""
    refused = []

    def before_send(request, **kwargs):
        if len(refused) >= times:
            return None
        refused.append(request.url)
        body = b"" if operation == "HeadObject" else (
            f"<Error><Code>{code}</Code><Message>refused</Message></Error>".encode())
        request.url = "https://refused.invalid/"  # in-process moto leaves a request for elsewhere alone
        return AWSResponse(request.url, status, {"Content-Type": "application/xml"}, _Body(body))

    s3.meta.events.register_first(f"before-send.s3.{operation}", before_send)
    return refused


def calls(s3) -> list[tuple[str, dict]]:
    """The operations `s3` is asked for from now on, with their parameters."""
    made = []
    s3.meta.events.register_first("before-parameter-build.s3",
                                  lambda model, params, **kw: made.append((model.name, dict(params))))
    return made


def uploads(s3, key: str) -> list:
    return [u for u in s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) if u["Key"] == key]


# head and condition


def test_head_of_an_absent_object_is_none(s3, key):
    assert head(s3, bucket=BUCKET, key=key) is None


def test_head_is_the_quoted_etag_and_the_user_metadata(s3, key):
    etag = s3.put_object(Bucket=BUCKET, Key=key, Body=b"x", Metadata={"source-etag": "e1"})["ETag"]
    assert etag.startswith('"')
    assert head(s3, bucket=BUCKET, key=key) == Current(etag=etag, metadata={"source-etag": "e1"})
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"y")
    assert head(s3, bucket=BUCKET, key=key).metadata == {}


@pytest.fixture(scope="module")
def stubbed(aws):
    """A client of its own, for answers through botocore's Stubber."""
    return boto3.session.Session().client("s3", region_name=REGION)


@pytest.mark.parametrize("code", ["404", "NoSuchKey", "NotFound"])
def test_every_not_found_answer_is_no_object(stubbed, code):
    client = stubbed
    with Stubber(client) as stub:
        stub.add_client_error("head_object", service_error_code=code, http_status_code=404)
        assert head(client, bucket=BUCKET, key="k") is None


@pytest.mark.parametrize(("status", "code"), [(403, "403"), (500, "500")])
def test_head_passes_other_errors_on(s3, key, status, code):
    refuse(s3, "HeadObject", status=status)
    with pytest.raises(ClientError) as raised:
        head(s3, bucket=BUCKET, key=key)
    assert raised.value.response["Error"]["Code"] == code


def test_the_condition_replaces_exactly_the_object_looked_at_or_creates_only():
    assert condition(Current(etag='"abc"', metadata={})) == {"IfMatch": '"abc"'}
    assert condition(None) == {"IfNoneMatch": "*"}


# put_file: one PutObject


@pytest.mark.parametrize("size", [64 << 20, (64 << 20) + 1])
def test_by_default_up_to_64_mib_go_up_in_one_put_and_more_in_parts_of_64_mib(stubbed, tmp_path, size):
    path = tmp_path / "sparse"
    with open(path, "wb") as f:
        f.truncate(size)
    where = {"Bucket": BUCKET, "Key": "k"}
    with Stubber(stubbed) as stub:
        if size <= 64 << 20:
            stub.add_response("put_object", {"ETag": '"one"'}, {**where, "Body": ANY})
        else:
            stub.add_response("create_multipart_upload", {"UploadId": "u"}, where)
            for number in (1, 2):
                stub.add_response("upload_part", {"ETag": f'"p{number}"'},
                                  {**where, "UploadId": "u", "PartNumber": number, "Body": ANY})
            stub.add_response("complete_multipart_upload", {"ETag": '"parts"'}, {**where, "UploadId": "u", "MultipartUpload": {
                "Parts": [{"ETag": '"p1"', "PartNumber": 1}, {"ETag": '"p2"', "PartNumber": 2}]}})
        etag = put_file(stubbed, bucket=BUCKET, key="k", path=str(path), extra={})
        stub.assert_no_pending_responses()
    assert etag == ('"one"' if size <= 64 << 20 else '"parts"')


@pytest.mark.parametrize("when", [None, {}])
def test_an_unconditional_put_writes_the_file_with_its_metadata_and_returns_the_etag(s3, key, tmp_path, when):
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"older")
    made = calls(s3)
    etag = put_file(s3, bucket=BUCKET, key=key, path=a_file(tmp_path, 1000), extra=EXTRA, when=when)
    assert [name for name, _ in made] == ["PutObject"]
    got = s3.get_object(Bucket=BUCKET, Key=key)
    assert got["Body"].read() == bytes(i % 251 for i in range(1000))
    assert (got["ETag"], got["Metadata"], got["ContentType"]) == (etag, EXTRA["Metadata"], EXTRA["ContentType"])


def test_create_only_writes_an_absent_object_and_loses_to_one_that_appeared(s3, key, tmp_path):
    path = a_file(tmp_path, 10)
    etag = put_file(s3, bucket=BUCKET, key=key, path=path, extra=EXTRA, when=condition(None))
    assert head(s3, bucket=BUCKET, key=key).etag == etag
    with pytest.raises(PreconditionLost) as lost:
        put_file(s3, bucket=BUCKET, key=key, path=path, extra=EXTRA, when=condition(None))
    assert str(lost.value) == f"s3://{BUCKET}/{key} changed since it was looked at (PreconditionFailed)"
    assert lost.value.__cause__ is None and lost.value.__suppress_context__


def test_if_match_replaces_the_object_looked_at_and_loses_when_it_changed_or_went(s3, key, tmp_path):
    path = a_file(tmp_path, 10)
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"first")
    looked = head(s3, bucket=BUCKET, key=key)
    etag = put_file(s3, bucket=BUCKET, key=key, path=path, extra=EXTRA, when=condition(looked))
    assert s3.get_object(Bucket=BUCKET, Key=key)["ETag"] == etag
    with pytest.raises(PreconditionLost, match=r"\(PreconditionFailed\)$"):
        put_file(s3, bucket=BUCKET, key=key, path=path, extra={}, when=condition(looked))  # etag is now another
    s3.delete_object(Bucket=BUCKET, Key=key)
    with pytest.raises(PreconditionLost, match=r"\(NoSuchKey\)$"):
        put_file(s3, bucket=BUCKET, key=key, path=path, extra={}, when=condition(Current(etag=etag, metadata={})))


@pytest.mark.parametrize(("status", "code"), [
    (412, "PreconditionFailed"), (409, "ConditionalRequestConflict"), (404, "NoSuchKey"), (404, "NoSuchUpload"),
    (412, "SomethingNew"), (409, "OperationAborted"),
])
def test_a_conditional_put_that_s3_refuses_as_changed_is_lost(s3, key, tmp_path, status, code):
    refuse(s3, "PutObject", status=status, code=code)
    with pytest.raises(PreconditionLost, match="^" + re.escape(f"s3://{BUCKET}/{key} changed since it was looked at ({code})") + "$"):
        put_file(s3, bucket=BUCKET, key=key, path=a_file(tmp_path, 10), extra={}, when=condition(None))


@pytest.mark.parametrize(("status", "code"), [(500, "InternalError"), (403, "AccessDenied"), (404, "NoSuchBucket")])
def test_other_errors_of_a_conditional_put_pass_through(s3, key, tmp_path, status, code):
    refuse(s3, "PutObject", status=status, code=code)
    with pytest.raises(ClientError) as raised:
        put_file(s3, bucket=BUCKET, key=key, path=a_file(tmp_path, 10), extra={}, when=condition(None))
    assert raised.value.response["Error"]["Code"] == code


def test_an_unconditional_put_refused_as_changed_is_not_lost_but_an_error(s3, key, tmp_path):
    refuse(s3, "PutObject", status=409, code="ConditionalRequestConflict")
    with pytest.raises(ClientError) as raised:
        put_file(s3, bucket=BUCKET, key=key, path=a_file(tmp_path, 10), extra={})
    assert not isinstance(raised.value, PreconditionLost)


# put_file: multipart


@pytest.mark.parametrize(("size", "multipart"), [(0, False), (PART, False), (PART + 1, True)])
def test_a_file_above_the_threshold_goes_up_in_parts(s3, key, tmp_path, size, multipart):
    made = calls(s3)
    etag = put_file(s3, bucket=BUCKET, key=key, path=a_file(tmp_path, size), extra=EXTRA, threshold=PART,
                    part_size=PART)
    names = [name for name, _ in made]
    assert names == (["CreateMultipartUpload", "UploadPart", "UploadPart", "CompleteMultipartUpload"] if multipart
                     else ["PutObject"])
    got = s3.get_object(Bucket=BUCKET, Key=key)
    assert got["Body"].read() == bytes(i % 251 for i in range(size))
    assert (got["ETag"], got["Metadata"], got["ContentType"]) == (etag, EXTRA["Metadata"], EXTRA["ContentType"])


def test_parts_are_numbered_from_1_and_cut_at_part_size(s3, key, tmp_path):
    made = calls(s3)
    put_file(s3, bucket=BUCKET, key=key, path=a_file(tmp_path, 2 * PART + 3), extra={}, threshold=0, part_size=PART)
    parts = [(p["PartNumber"], len(p["Body"].getvalue())) for name, p in made if name == "UploadPart"]
    assert parts == [(1, PART), (2, PART), (3, 3)]
    [complete] = [p for name, p in made if name == "CompleteMultipartUpload"]
    assert [p["PartNumber"] for p in complete["MultipartUpload"]["Parts"]] == [1, 2, 3]
    assert s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == 2 * PART + 3


@pytest.mark.parametrize("looked", [None, Current(etag='"held"', metadata={})])
def test_the_multipart_condition_is_sent_on_the_completion_only(s3, key, tmp_path, looked):
    sent = {}
    for operation in ("CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"):
        def record(request, operation=operation, **kwargs):
            sent.setdefault(operation, []).append({k: v.decode() for k, v in request.headers.items()
                                                    if k.lower() in ("if-match", "if-none-match")})
        s3.meta.events.register_first(f"before-send.s3.{operation}", record)
    put_file(s3, bucket=BUCKET, key=key, path=a_file(tmp_path, 10), extra={}, when=condition(looked), threshold=0)
    assert sent["CreateMultipartUpload"] == sent["UploadPart"] == [{}]
    assert sent["CompleteMultipartUpload"] == [{"If-None-Match": "*"} if looked is None else {"If-Match": '"held"'}]


@pytest.mark.parametrize(("status", "code"), [
    (412, "PreconditionFailed"), (409, "ConditionalRequestConflict"), (404, "NoSuchUpload"),
])
def test_a_multipart_upload_that_loses_is_aborted_and_reported_lost(s3, key, tmp_path, status, code):
    refuse(s3, "CompleteMultipartUpload", status=status, code=code)
    with pytest.raises(PreconditionLost, match=rf"\({code}\)$"):
        put_file(s3, bucket=BUCKET, key=key, path=a_file(tmp_path, 10), extra={}, when=condition(None), threshold=0)
    assert uploads(s3, key) == []
    assert head(s3, bucket=BUCKET, key=key) is None


def test_a_multipart_upload_whose_part_fails_is_aborted_and_the_error_passes_through(s3, key, tmp_path):
    refuse(s3, "UploadPart", status=500, code="InternalError")
    with pytest.raises(ClientError) as raised:
        put_file(s3, bucket=BUCKET, key=key, path=a_file(tmp_path, 10), extra={}, when=condition(None), threshold=0)
    assert raised.value.response["Error"]["Code"] == "InternalError"
    assert uploads(s3, key) == []


def test_a_failed_abort_leaves_the_original_error_to_report(s3, key, tmp_path):
    refuse(s3, "UploadPart", status=500, code="InternalError")
    aborts = refuse(s3, "AbortMultipartUpload", status=503, code="ServiceUnavailable", times=1)
    with pytest.raises(ClientError) as raised:
        put_file(s3, bucket=BUCKET, key=key, path=a_file(tmp_path, 10), extra={}, threshold=0)
    assert raised.value.response["Error"]["Code"] == "InternalError"
    assert len(aborts) == 1
    [left] = uploads(s3, key)  # the abort was refused
    s3.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=left["UploadId"])


def test_an_interrupted_multipart_upload_is_aborted_too(s3, key, tmp_path, monkeypatch):
    def interrupted(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(s3, "upload_part", interrupted)
    with pytest.raises(KeyboardInterrupt):
        put_file(s3, bucket=BUCKET, key=key, path=a_file(tmp_path, 10), extra={}, threshold=0)
    assert uploads(s3, key) == []
