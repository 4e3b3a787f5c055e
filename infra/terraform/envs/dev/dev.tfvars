region      = "eu-west-1"
name_prefix = "elt-dev"
# AWS SDK for pandas (awswrangler) layer for eu-west-1 / Python 3.12 (validated against region and
# lambda_runtime); see https://aws-sdk-pandas.readthedocs.io/en/stable/layers.html for others.
aws_sdk_pandas_layer_arn = "arn:aws:lambda:eu-west-1:336392948345:layer:AWSSDKPandas-Python312:16"
iam_name_prefix          = ""
tags = {
  project     = "serverless-elt"
  environment = "dev"
}
# Safe defaults: destroy fails on a non-empty bucket, bronze is versioned, the ledger is protected.
# A throwaway stack may set force_destroy = true and ledger_deletion_protection = false.
force_destroy              = false
ledger_deletion_protection = true
observability_enabled      = false
