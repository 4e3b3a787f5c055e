# One module for both functions: a role with the least-privilege policy passed in, a log group with
# retention, the function with its environment. No VPC by design (the pipeline uses only public
# AWS endpoints).

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "this" {
  name                 = "${var.iam_name_prefix}${var.function_name}"
  assume_role_policy   = data.aws_iam_policy_document.assume.json
  permissions_boundary = var.permissions_boundary_arn
  tags                 = var.role_tags
}

resource "aws_iam_role_policy" "this" {
  name   = "${var.function_name}-least-privilege"
  role   = aws_iam_role.this.id
  policy = var.policy_json
}

resource "aws_cloudwatch_log_group" "this" {
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts log data; var.log_kms_key_arn (exposed in envs/dev) sets a customer-managed key.
  #checkov:skip=CKV_AWS_338:Retention is a per-environment choice (var.log_retention_days); dev keeps two weeks.
  name              = "/aws/lambda/${var.function_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_kms_key_arn
  tags              = var.tags
}

resource "aws_lambda_function" "this" {
  #checkov:skip=CKV_AWS_117:No VPC by design: the functions only call S3, SQS and DynamoDB public endpoints.
  #checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile per account; zips are reproducible and hashed instead.
  #checkov:skip=CKV_AWS_173:Environment variables hold resource names only, no secrets; encrypted with the AWS-managed key.
  #checkov:skip=CKV_AWS_116:Both functions are fed by SQS event source mappings, whose queues have their own DLQs (events DLQ, ingest DLQ); a Lambda DLQ only applies to asynchronous invocation; the module's dead_letter_target_arn input adds one.
  function_name                  = var.function_name
  role                           = aws_iam_role.this.arn
  handler                        = var.handler
  runtime                        = var.runtime
  filename                       = var.zip_path
  source_code_hash               = filebase64sha256(var.zip_path)
  memory_size                    = var.memory_size
  timeout                        = var.timeout
  layers                         = var.layers
  reserved_concurrent_executions = var.reserved_concurrency

  ephemeral_storage {
    size = var.ephemeral_storage_mb
  }

  environment {
    variables = var.environment
  }

  tracing_config {
    mode = "Active"
  }

  dynamic "dead_letter_config" {
    for_each = var.dead_letter_target_arn == null ? [] : [var.dead_letter_target_arn]
    content {
      target_arn = dead_letter_config.value
    }
  }

  tags       = var.tags
  depends_on = [aws_cloudwatch_log_group.this, aws_iam_role_policy.this]
}
