"""Silver reads as one hive-partitioned dataset with pyarrow.dataset and with DuckDB."""

import json

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from lambdas.shared import schemas
from ops.gen_events import generate


def test_a_types_silver_prefix_is_one_dataset_with_declared_types_in_pyarrow_and_duckdb(pipeline, tmp_path):
    expected = 0
    for day in ("2025-01-01", "2025-01-02"):
        for part in range(2):
            pairs = list(generate(type_="shipments", count=80, seed=hash((day, part)) & 0xFF, bad_ratio=0.05))
            expected += sum(ok for ok, _ in pairs)
            body = ("\n".join(t for _, t in pairs) + "\n").encode()
            assert pipeline.run(f"bronze/shipments/dt={day}/part-{part}.jsonl", body) == {"batchItemFailures": []}
    root = tmp_path / "lake"
    for obj in pipeline.s3.list_objects_v2(Bucket=pipeline.silver, Prefix="silver/")["Contents"]:
        target = root / obj["Key"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(pipeline.s3.get_object(Bucket=pipeline.silver, Key=obj["Key"])["Body"].read())

    dataset = ds.dataset(root / "silver" / "shipments", format="parquet", partitioning="hive")
    table = dataset.to_table()
    assert table.num_rows == expected
    declared = schemas.get("shipments").silver
    for field in declared:
        assert table.schema.field(field.name).type == field.type, field.name
    assert table.schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert sorted(set(table.column("dt").to_pylist())) == ["2025-01-01", "2025-01-02"]

    con = duckdb.connect()
    glob = str(root / "silver" / "shipments" / "**" / "*.parquet")
    rows = con.execute(f"select count(*) from read_parquet('{glob}', hive_partitioning = true)").fetchone()[0]
    assert rows == expected
    types = dict(con.execute(
        f"select column_name, column_type from (describe select * from read_parquet('{glob}', hive_partitioning = true))"
    ).fetchall())
    assert types["created_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["origin"].startswith("STRUCT(city VARCHAR, country VARCHAR")
    assert types["items"] == "STRUCT(sku VARCHAR, quantity BIGINT)[]"
    assert types["tags"] == "VARCHAR[]"
    first = con.execute(f"select items[1].sku, origin.country from read_parquet('{glob}') limit 1").fetchone()
    assert first[0].startswith("SKU-") and len(first[1]) == 2
    json.dumps(first)
