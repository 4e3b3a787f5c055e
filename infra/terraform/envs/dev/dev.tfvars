region      = "eu-west-1"
name_prefix = "elt-dev"
# AWS SDK for pandas (awswrangler) layer for eu-west-1 / Python 3.12; see
# https://aws-sdk-pandas.readthedocs.io/en/stable/layers.html for other regions and versions.
aws_sdk_pandas_layer_arn = "arn:aws:lambda:eu-west-1:336392948345:layer:AWSSDKPandas-Python312:16"
iam_name_prefix          = ""
tags = {
  project     = "serverless-elt"
  environment = "dev"
}
force_destroy              = true
ledger_deletion_protection = false
observability_enabled      = false
