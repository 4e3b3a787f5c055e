"""The object ledger (DynamoDB idempotency table): one item per object version.

Partition key `pk` = `s3://<bucket>/<key>`, sort key `etag`. Lifecycle: CLAIMED -> QUEUED ->
DONE | FAILED. DynamoDB TTL deletes expired items up to 48 h late (moto never does), so every read
and every condition checks `expiration` itself.

`sequencer` is the S3 event order of the newest event seen for this (key, ETag): the same ETag can
come back after another version (A, B, A again), and that newer event takes the item over (`retake`)
so the version is processed again. A transform of an older event of the same ETag then leaves the
item alone (its updates are conditional on the sequencer it carries).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from botocore.exceptions import ClientError

CLAIMED, QUEUED, DONE, FAILED = "CLAIMED", "QUEUED", "DONE", "FAILED"
STATUSES = (CLAIMED, QUEUED, DONE, FAILED)
MAX_ERROR_CHARS = 2000


def object_pk(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def parse_pk(pk: str) -> tuple[str, str]:
    bucket, _, key = pk.removeprefix("s3://").partition("/")
    if not pk.startswith("s3://") or not bucket or not key:
        raise ValueError(f"{pk!r} is not s3://bucket/key")
    return bucket, key


# --- the claim condition, one named sub-condition per case ---------------------------------------
# A first event for this object version: no item yet.
NEVER_SEEN = "attribute_not_exists(pk)"
# The item outlived its TTL but DynamoDB has not deleted it yet (TTL lags up to 48 h).
EXPIRED = "#expiration < :now_s"
# A claimer crashed between claim and send: its lease ran out, so this retry takes over.
LEASE_LAPSED = "(#status = :claimed AND #lease_until < :now_ms)"
CLAIM_CONDITION = f"{NEVER_SEEN} OR {EXPIRED} OR {LEASE_LAPSED}"

# --- the retake condition: a newer event of the same ETag (A, B, A again) takes the item over ----
# Nobody changed the item since we read it: same status and the same (or no) older sequencer...
UNCHANGED_STATUS = "#status = :old_status"
SAME_OLD_SEQUENCER = "#sequencer = :old_sequencer"
NO_OLD_SEQUENCER = "attribute_not_exists(#sequencer)"

# --- transform updates: only the event that owns the item records on it -------------------------
# A unit without a sequencer (replay, redrive) or an item from before sequencers were recorded.
OWNED_BY = "(attribute_not_exists(#sequencer) OR #sequencer = :sequencer)"


@dataclass(frozen=True)
class Claim:
    won: bool
    pk: str
    etag: str
    reason: str  # "claimed" or "retaken" when won; "duplicate" or "changed" otherwise
    existing: dict | None = None


def plain(item: dict) -> dict:
    """DynamoDB attribute-value map -> plain Python values."""
    out = {}
    for name, value in item.items():
        (kind, raw), = value.items()
        if kind == "N":
            out[name] = int(raw) if raw.lstrip("-").isdigit() else float(raw)
        elif kind == "NULL":
            out[name] = None
        else:
            out[name] = raw
    return out


def _av(value) -> dict:
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": str(value)}
    return {"S": str(value)}


class Ledger:
    """Ledger operations on a low-level DynamoDB client (passed in)."""

    def __init__(self, client, table: str, *, ttl_days: int = 30, clock: Callable[[], float] = time.time):
        self.client = client
        self.table = table
        self.ttl_days = int(ttl_days)
        self.clock = clock

    def _expiration(self, now: float) -> int:
        return int(now) + self.ttl_days * 86400

    def claim(
        self, *, bucket: str, key: str, etag: str, size: int, type_: str, dt: str, lease_seconds: int,
        sequencer: str = "",
    ) -> Claim:
        """One conditional write: win the object version or learn it is a duplicate."""
        now = self.clock()
        pk = object_pk(bucket, key)
        item = self._claim_item(now, bucket=bucket, key=key, etag=etag, size=size, type_=type_, dt=dt,
                                lease_seconds=lease_seconds, sequencer=sequencer)
        try:
            self.client.put_item(
                TableName=self.table,
                Item={k: _av(v) for k, v in item.items()},
                ConditionExpression=CLAIM_CONDITION,
                ExpressionAttributeNames={
                    "#status": "status",
                    "#lease_until": "lease_until",
                    "#expiration": "expiration",
                },
                ExpressionAttributeValues={
                    ":now_s": {"N": str(int(now))},
                    ":now_ms": {"N": str(int(now * 1000))},
                    ":claimed": {"S": CLAIMED},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            old = exc.response.get("Item")
            return Claim(won=False, pk=pk, etag=etag, reason="duplicate", existing=plain(old) if old else None)
        return Claim(won=True, pk=pk, etag=etag, reason="claimed")

    def retake(
        self, *, bucket: str, key: str, etag: str, size: int, type_: str, dt: str, lease_seconds: int,
        sequencer: str, existing: dict,
    ) -> Claim:
        """Claim a finished or queued item again for a newer event of the same ETag (the caller
        compared the sequencers). Conditional on the item being as `existing` shows it, so of two
        racing events at most one wins; the loser sees reason "changed" and retries."""
        now = self.clock()
        pk = object_pk(bucket, key)
        item = self._claim_item(now, bucket=bucket, key=key, etag=etag, size=size, type_=type_, dt=dt,
                                lease_seconds=lease_seconds, sequencer=sequencer)
        item["previous_sequencer"] = existing.get("sequencer") or ""
        item["previous_outcome"] = existing.get("outcome") or existing.get("status") or ""
        values = {":old_status": {"S": str(existing.get("status"))}}
        if existing.get("sequencer"):
            condition = f"{UNCHANGED_STATUS} AND {SAME_OLD_SEQUENCER}"
            values[":old_sequencer"] = {"S": existing["sequencer"]}
        else:
            condition = f"{UNCHANGED_STATUS} AND {NO_OLD_SEQUENCER}"
        try:
            self.client.put_item(
                TableName=self.table,
                Item={k: _av(v) for k, v in item.items()},
                ConditionExpression=condition,
                ExpressionAttributeNames={"#status": "status", "#sequencer": "sequencer"},
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return Claim(won=False, pk=pk, etag=etag, reason="changed", existing=existing)
        return Claim(won=True, pk=pk, etag=etag, reason="retaken", existing=existing)

    def _claim_item(self, now: float, *, bucket, key, etag, size, type_, dt, lease_seconds, sequencer) -> dict:
        item = {
            "pk": object_pk(bucket, key),
            "etag": etag,
            "status": CLAIMED,
            "lease_until": int(now * 1000) + int(lease_seconds) * 1000,
            "expiration": self._expiration(now),
            "bucket": bucket,
            "key": key,
            "type": type_,
            "dt": dt,
            "size": int(size),
            "claimed_at": _iso(now),
            "attempts": 0,
        }
        if sequencer:
            item["sequencer"] = sequencer
        return item

    def release(self, *, bucket: str, key: str, etag: str) -> None:
        """Give up a claim we hold (the send failed), so the retried event can claim at once."""
        try:
            self.client.delete_item(
                TableName=self.table,
                Key=self._key(bucket, key, etag),
                # Only our own unfinished claim: never delete a QUEUED/DONE/FAILED record.
                ConditionExpression="#status = :claimed",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":claimed": {"S": CLAIMED}},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def mark_queued(self, *, bucket: str, key: str, etag: str, message_id: str) -> None:
        now = self.clock()
        moved = self._update(
            bucket,
            key,
            etag,
            {"status": QUEUED, "queued_at": _iso(now), "message_id": message_id},
            # Only move forward from our claim: a fast transform may already have written DONE.
            condition="#status = :claimed",
            condition_values={":claimed": CLAIMED},
        )
        if not moved:
            self._update(bucket, key, etag, {"queued_at": _iso(now), "message_id": message_id})

    def mark_done(
        self, *, bucket: str, key: str, etag: str, silver_key: str, rows: int, rejected_rows: int,
        outcome: str = "written", reason: str = "", sequencer: str = "", unknown_fields: dict | None = None,
        fields_examined: int = 0,
    ) -> bool:
        """DONE with its outcome (written, superseded + reason, source-deleted). With `sequencer`
        (the unit's), only while the item still belongs to that event: False when a newer event of
        the same ETag has taken it over (see `retake`). `unknown_fields` (schema drift: field name
        -> lines that had it, of `fields_examined`) is stored as a JSON string."""
        now = self.clock()
        values = {
            "status": DONE,
            "silver_key": silver_key,
            "rows": int(rows),
            "rejected_rows": int(rejected_rows),
            "finished_at": _iso(now),
            "outcome": outcome,
            "expiration": self._expiration(now),
        }
        if reason:
            values["superseded_reason"] = reason[:MAX_ERROR_CHARS]
        if unknown_fields:
            values["unknown_fields"] = json.dumps(unknown_fields, sort_keys=True, ensure_ascii=False)[:MAX_ERROR_CHARS]
            values["fields_examined"] = int(fields_examined)
        remove = ("last_error", "superseded_reason") if outcome == "written" else ("last_error",) if reason else ()
        if outcome == "written" and not unknown_fields:  # an earlier version's drift is not this one's
            remove += ("unknown_fields", "fields_examined")
        return self._update(bucket, key, etag, values, add_attempt=True, remove=remove, **_owned(sequencer))

    def mark_failed(self, *, bucket: str, key: str, etag: str, error: str, sequencer: str = "") -> bool:
        now = self.clock()
        return self._update(
            bucket,
            key,
            etag,
            {
                "status": FAILED,
                "last_error": error[:MAX_ERROR_CHARS],
                "finished_at": _iso(now),
                "expiration": self._expiration(now),
            },
            add_attempt=True,
            **_owned(sequencer),
        )

    def versions(
        self, *, bucket: str, key: str, consistent: bool = True, page_size: int | None = None
    ) -> list[dict]:
        """Every ledger item of one key (all etags), as plain dicts with `expired` computed.

        Follows `LastEvaluatedKey` page by page (`page_size` sets the query's Limit); a page that
        hands back the key it started from would loop for ever, so it is an error instead."""
        now = self.clock()
        items, start = [], None
        while True:
            kwargs = dict(
                TableName=self.table,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": object_pk(bucket, key)}},
                ConsistentRead=consistent,
            )
            if page_size:
                kwargs["Limit"] = int(page_size)
            if start:
                kwargs["ExclusiveStartKey"] = start
            page = self.client.query(**kwargs)
            for raw in page.get("Items", []):
                item = plain(raw)
                item["expired"] = int(item.get("expiration", 0)) < now
                items.append(item)
            previous, start = start, page.get("LastEvaluatedKey")
            if not start:
                return items
            if start == previous:
                raise RuntimeError(f"ledger query for {object_pk(bucket, key)} made no progress past {start}")

    def get(self, *, bucket: str, key: str, etag: str) -> dict | None:
        raw = self.client.get_item(
            TableName=self.table, Key=self._key(bucket, key, etag), ConsistentRead=True
        ).get("Item")
        return plain(raw) if raw else None

    # -------------------------------------------------------------------------------------------
    @staticmethod
    def _key(bucket: str, key: str, etag: str) -> dict:
        return {"pk": {"S": object_pk(bucket, key)}, "etag": {"S": etag}}

    def _update(self, bucket, key, etag, values: dict, *, add_attempt=False, remove=(),
                condition=None, condition_values=None) -> bool:
        names = {f"#{k}": k for k in values}
        avs = {f":{k}": _av(v) for k, v in values.items()}
        sets = [f"#{k} = :{k}" for k in values]
        if "expiration" not in values:
            # An item purged meanwhile is re-created by this update: give it an expiration too.
            names["#expiration"] = "expiration"
            avs[":expiration"] = _av(self._expiration(self.clock()))
            sets.append("#expiration = if_not_exists(#expiration, :expiration)")
        expression = "SET " + ", ".join(sets)
        if add_attempt:
            names["#attempts"] = "attempts"
            avs[":one"] = {"N": "1"}
            expression += " ADD #attempts :one"
        if remove:
            for r in remove:
                names[f"#{r}"] = r
            expression += " REMOVE " + ", ".join(f"#{r}" for r in remove)
        kwargs = dict(
            TableName=self.table,
            Key=self._key(bucket, key, etag),
            UpdateExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=avs,
        )
        if condition:
            for name in ("status", "sequencer"):
                if f"#{name}" in condition:
                    names[f"#{name}"] = name
            kwargs["ConditionExpression"] = condition
            avs.update({k: _av(v) for k, v in (condition_values or {}).items()})
        try:
            self.client.update_item(**kwargs)
        except ClientError as exc:
            if condition and exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True


def _owned(sequencer: str) -> dict:
    """The condition that keeps an older event's outcome off an item a newer event has retaken."""
    if not sequencer:
        return {}
    return {"condition": OWNED_BY, "condition_values": {":sequencer": sequencer}}


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
