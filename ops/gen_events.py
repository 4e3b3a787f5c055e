"""Fake bronze events: realistic, byte-identical for the same seed, with a chosen share of bad lines.

Bad lines mix malformed JSON, wrong field types (including a timestamp that does not parse) and
missing required fields. In `json` (array) format a malformed element would make the whole array
unreadable, so bad elements there are wrong types and missing fields only.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass

from lambdas.shared import schemas

CARRIERS = ("dhl", "ups", "fedex", "postnl", "dpd", "gls", "usps")
STATUSES = ("label_created", "picked_up", "in_transit", "out_for_delivery", "delivered", "exception")
CITIES = (("Amsterdam", "NL", "1011"), ("Berlin", "DE", "10115"), ("Paris", "FR", "75001"),
          ("Madrid", "ES", "28001"), ("Chicago", "US", "60601"), ("São Paulo", "BR", "01000"),
          ("Kraków", "PL", "30-001"), ("Tokyo", "JP", "100-0001"), ("Austin", "US", "73301"))
CHANNELS = ("web", "app", "store", "marketplace")
CURRENCIES = ("EUR", "USD", "GBP", "PLN")
TIERS = ("bronze", "silver", "gold", None)
TAGS = ("fragile", "gift", "oversize", "return", "priority", "hazmat")


@dataclass(frozen=True)
class GeneratedFile:
    path: str
    type: str
    format: str
    rows: int  # every line / element written, good and bad
    good: int
    bad: int
    bytes: int


def _ts(rng: random.Random, day: dt.date) -> str:
    moment = dt.datetime.combine(day, dt.time(), dt.UTC) + dt.timedelta(seconds=rng.randrange(86400),
                                                                          microseconds=rng.randrange(1000) * 1000)
    style = rng.random()
    if style < 0.8:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    if style < 0.9:
        return (moment + dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S") + "+02:00"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _address(rng: random.Random) -> dict:
    city, country, postal = rng.choice(CITIES)
    return {"city": city, "country": country, "postal_code": postal}


def shipment(rng: random.Random, n: int, day: dt.date) -> dict:
    created = _ts(rng, day)
    status = rng.choice(STATUSES)
    event = {
        "shipment_id": f"SHP-{day:%Y%m%d}-{n:08d}",
        "order_id": f"ORD-{rng.randrange(10**9):09d}",
        "carrier": rng.choice(CARRIERS),
        "service_level": rng.choice(("standard", "express", "economy")),
        "status": status,
        "origin": _address(rng),
        "destination": _address(rng),
        "weight_kg": round(rng.uniform(0.1, 40.0), 3),
        "dimensions_cm": {"length": round(rng.uniform(5, 120), 1), "width": round(rng.uniform(5, 80), 1),
                          "height": round(rng.uniform(1, 60), 1)},
        "items": [{"sku": f"SKU-{rng.randrange(10**6):06d}", "quantity": rng.randint(1, 5)}
                  for _ in range(rng.randint(1, 4))],
        "tags": rng.sample(TAGS, rng.randint(0, 2)),
        "is_express": rng.random() < 0.2,
        "created_at": created,
    }
    if status == "delivered":
        event["delivered_at"] = _ts(rng, day)
    if rng.random() < 0.1:
        event["destination"]["postal_code"] = None
    return event


def order(rng: random.Random, n: int, day: dt.date) -> dict:
    lines = [{"sku": f"SKU-{rng.randrange(10**6):06d}", "quantity": rng.randint(1, 6),
              "unit_price": round(rng.uniform(1, 250), 2)} for _ in range(rng.randint(1, 5))]
    event = {
        "order_id": f"ORD-{day:%Y%m%d}-{n:08d}",
        "customer": {"customer_id": f"C{rng.randrange(10**7):07d}",
                     "email": f"user{rng.randrange(10**6)}@example.com", "tier": rng.choice(TIERS)},
        "channel": rng.choice(CHANNELS),
        "lines": lines,
        "currency": rng.choice(CURRENCIES),
        "total_amount": round(sum(x["quantity"] * x["unit_price"] for x in lines), 2),
        "placed_at": _ts(rng, day),
    }
    if rng.random() < 0.3:
        event["coupon_code"] = f"SAVE{rng.randint(5, 30)}"
    if rng.random() < 0.8:
        event["paid_at"] = _ts(rng, day)
    return event


MAKERS = {"shipments": shipment, "orders": order}
# A wrong type per event type: (field, bad value) pairs that a producer bug could plausibly emit.
WRONG_TYPES = {
    "shipments": (("weight_kg", "heavy"), ("items", "SKU-1"), ("is_express", "yes"), ("created_at", 1735689600),
                  ("created_at", "yesterday"), ("origin", "Amsterdam")),
    "orders": (("total_amount", "12,50"), ("lines", {"sku": "x"}), ("placed_at", "not a date"),
               ("customer", "C123"), ("currency", 978)),
}


def _bad(rng: random.Random, event: dict, type_: str, allow_malformed: bool) -> tuple[dict | None, str | None]:
    """Spoil one event: returns (event, None) or (None, raw malformed text)."""
    kinds = ["wrong_type", "missing"] + (["malformed"] if allow_malformed else [])
    kind = rng.choice(kinds)
    if kind == "wrong_type":
        field, value = rng.choice(WRONG_TYPES[type_])
        event = dict(event, **{field: value})
        return event, None
    if kind == "missing":
        required = [p for p in schemas.get(type_).required if "." not in p and "[]" not in p]
        event = dict(event)
        event.pop(rng.choice(required), None)
        return event, None
    text = json.dumps(event, ensure_ascii=False)
    cut = rng.choice(("truncate", "quote", "comma"))
    if cut == "truncate":
        return None, text[: rng.randrange(5, max(6, len(text) - 5))]
    if cut == "quote":
        return None, text.replace('"', "", 1)
    return None, text.replace(",", ",,", 1)


def generate(
    *, type_: str, count: int, fmt: str = "jsonl", seed: int = 0, bad_ratio: float = 0.0,
    day: dt.date | None = None,
) -> Iterator[tuple[bool, str]]:
    """Yield (is_good, serialized event) pairs, deterministic for the seed."""
    schemas.get(type_)
    maker = MAKERS[type_]
    rng = random.Random(f"{type_}:{seed}")
    day = day or dt.date(2025, 1, 1)
    for n in range(count):
        event = maker(rng, n, day)
        if bad_ratio and rng.random() < bad_ratio:
            spoiled, raw = _bad(rng, event, type_, allow_malformed=(fmt == "jsonl"))
            yield False, raw if raw is not None else json.dumps(spoiled, ensure_ascii=False)
        else:
            yield True, json.dumps(event, ensure_ascii=False)


def write_events(  # noqa: PLR0913
    path: str, *, type_: str, count: int, fmt: str = "jsonl", seed: int = 0, bad_ratio: float = 0.0,
    day: dt.date | None = None, gzip_output: bool | None = None,
) -> GeneratedFile:
    """Write events to `path` (gzip when it ends with .gz)."""
    import gzip

    if fmt not in ("jsonl", "json"):
        raise ValueError(f"format {fmt!r} is not jsonl or json")
    if not 0.0 <= bad_ratio <= 1.0:
        raise ValueError(f"bad ratio {bad_ratio} is not between 0 and 1")
    gz = path.endswith(".gz") if gzip_output is None else gzip_output
    good = bad = 0
    raw = open(path, "wb")  # noqa: SIM115 - closed below
    # No file name and no mtime in the gzip header: the same seed gives the same bytes.
    out = gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) if gz else raw
    with raw, out:
        if fmt == "json":
            out.write(b"[\n")
        for i, (ok, text) in enumerate(generate(type_=type_, count=count, fmt=fmt, seed=seed,
                                                bad_ratio=bad_ratio, day=day)):
            good += ok
            bad += not ok
            if fmt == "json":
                out.write((",\n" if i else "") .encode() + text.encode("utf-8"))
            else:
                out.write(text.encode("utf-8") + b"\n")
        if fmt == "json":
            out.write(b"\n]\n")
    import os

    return GeneratedFile(path=path, type=type_, format=fmt, rows=good + bad, good=good, bad=bad,
                         bytes=os.path.getsize(path))
