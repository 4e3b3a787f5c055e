"""Schema registry: the declared columns of each event type, and which fields are required.

Columns are read with Arrow's JSON reader using the explicit schema below; silver adds lineage
columns. Timestamps are timestamp[us, tz=UTC] (ISO-8601 strings; a naive value is taken as UTC).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")

LINEAGE_FIELDS = (
    pa.field("_source_key", pa.string()),
    pa.field("_line", pa.int64()),
    pa.field("_ingested_at", TS),
)


@dataclass(frozen=True)
class EventSchema:
    name: str
    arrow: pa.Schema  # declared columns, all nullable for reading
    required: tuple[str, ...]  # dotted paths; "a.b" = b required when a is present; "l[].x" in lists

    @property
    def silver(self) -> pa.Schema:
        return pa.schema(list(self.arrow) + list(LINEAGE_FIELDS))


_ADDRESS = pa.struct(
    [
        pa.field("city", pa.string()),
        pa.field("country", pa.string()),
        pa.field("postal_code", pa.string()),
    ]
)

SHIPMENTS = EventSchema(
    name="shipments",
    arrow=pa.schema(
        [
            pa.field("shipment_id", pa.string()),
            pa.field("order_id", pa.string()),
            pa.field("carrier", pa.string()),
            pa.field("service_level", pa.string()),
            pa.field("status", pa.string()),
            pa.field("origin", _ADDRESS),
            pa.field("destination", _ADDRESS),
            pa.field("weight_kg", pa.float64()),
            pa.field(
                "dimensions_cm",
                pa.struct([("length", pa.float64()), ("width", pa.float64()), ("height", pa.float64())]),
            ),
            pa.field(
                "items",
                pa.list_(pa.struct([pa.field("sku", pa.string()), pa.field("quantity", pa.int64())])),
            ),
            pa.field("tags", pa.list_(pa.string())),
            pa.field("is_express", pa.bool_()),
            pa.field("created_at", TS),
            pa.field("delivered_at", TS),  # optional: null until delivered
        ]
    ),
    required=(
        "shipment_id",
        "carrier",
        "status",
        "created_at",
        "origin.country",
        "destination.country",
        "items[].sku",
        "items[].quantity",
    ),
)

ORDERS = EventSchema(
    name="orders",
    arrow=pa.schema(
        [
            pa.field("order_id", pa.string()),
            pa.field(
                "customer",
                pa.struct(
                    [
                        pa.field("customer_id", pa.string()),
                        pa.field("email", pa.string()),
                        pa.field("tier", pa.string()),
                    ]
                ),
            ),
            pa.field("channel", pa.string()),
            pa.field(
                "lines",
                pa.list_(
                    pa.struct(
                        [
                            pa.field("sku", pa.string()),
                            pa.field("quantity", pa.int64()),
                            pa.field("unit_price", pa.float64()),
                        ]
                    )
                ),
            ),
            pa.field("currency", pa.string()),
            pa.field("total_amount", pa.float64()),
            pa.field("coupon_code", pa.string()),  # optional
            pa.field("placed_at", TS),
            pa.field("paid_at", TS),  # optional
        ]
    ),
    required=(
        "order_id",
        "customer",
        "customer.customer_id",
        "lines",
        "lines[].sku",
        "lines[].quantity",
        "lines[].unit_price",
        "currency",
        "total_amount",
        "placed_at",
    ),
)

REGISTRY: dict[str, EventSchema] = {s.name: s for s in (SHIPMENTS, ORDERS)}


class UnknownType(KeyError):
    def __init__(self, type_: str):
        super().__init__(type_)
        self.type = type_

    def __str__(self) -> str:
        return f"unknown event type {self.type!r}; known types: {', '.join(sorted(REGISTRY))}"


def get(type_: str) -> EventSchema:
    try:
        return REGISTRY[type_]
    except KeyError:
        raise UnknownType(type_) from None
