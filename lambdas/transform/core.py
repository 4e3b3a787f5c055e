"""The transform's public names, for app.py, tools and tests: see pipeline.py for how it works.

docs/transform.md is the guide to the modules of lambdas/transform and their words.
"""

from lambdas.transform.arrow_read import explain_arrow_error
from lambdas.transform.pipeline import DEFAULT_MAX_JSON_BYTES, transform_bytes, transform_stream
from lambdas.transform.results import TransformResult, UnreadableObject

__all__ = ["DEFAULT_MAX_JSON_BYTES", "TransformResult", "UnreadableObject", "explain_arrow_error",
           "transform_bytes", "transform_stream"]
