"""eltops: the on-call and backfill toolkit for the serverless ELT pipeline (library + click CLI)."""

__version__ = "0.1.0"
