"""Code shared by the ingest and transform Lambdas and imported by `ops`: one source of truth for
keys, the work-unit message, the object ledger, schemas, configuration and logging."""
