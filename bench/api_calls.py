"""AWS API calls per object in the ingest and transform handlers (in-process moto).

    python bench/api_calls.py [--objects 20] [--json]

Uploads --objects small JSONL objects, sends each one's S3 event through the ingest handler, then
the work units through the transform handler in batches of 10, counting every call the handlers'
clients make (botocore `before-call`). Prints calls per object by handler and operation. Half the
objects have a rejected line, so the quarantine write (PutObject) and its removal (DeleteObject)
both appear. No timing: the figure is a count.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def measure(objects: int) -> dict:
    from moto import mock_aws

    from tests.conftest import Pipeline

    counts = {"ingest": collections.Counter(), "transform": collections.Counter()}
    with mock_aws():
        p = Pipeline()
        for name, app in (("ingest", p.ingest_app), ("transform", p.transform_app)):
            deps = app._DEPS
            for c in {id(x): x for x in (getattr(deps, "s3", None), getattr(deps, "sqs", None),
                                          deps.ledger.client) if x is not None}.values():
                c.meta.events.register("before-call", lambda model, _n=name, **kw: counts[_n].update([model.name]))
        for i in range(objects):
            key = f"bronze/orders/dt=2025-01-02/o{i:03d}.jsonl"
            line = json.dumps({"order_id": f"o{i}", "customer": {"customer_id": "c"}, "currency": "EUR",
                               "lines": [{"sku": "s", "quantity": 1, "unit_price": 1.0}], "total_amount": 1.0,
                               "placed_at": "2025-01-02T00:00:00Z"})
            body = (line + "\n" + ("not json\n" if i % 2 else "")).encode()
            etag = p.put(key, body)
            p.ingest_app.handler(p.s3_event(key, etag, len(body)))
        messages = p.receive_all()
        for start in range(0, len(messages), 10):
            p.transform_app.handler(p.sqs_event(messages[start:start + 10]))
        p.close()
    return {name: {op: round(n / objects, 2) for op, n in sorted(c.items())} | {"total": round(sum(c.values()) / objects, 2)}
            for name, c in counts.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.objects < 1:
        parser.error(f"--objects {args.objects} must be at least 1")
    result = measure(args.objects)
    if args.json:
        print(json.dumps(result))
        return 0
    for name, ops in result.items():
        print(f"{name}: {ops['total']} calls per object")
        for op, n in ops.items():
            if op != "total":
                print(f"  {op:<22} {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
