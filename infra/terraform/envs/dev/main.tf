# serverless-elt, dev environment: S3 bronze -> SQS ingest queue -> ingest -> SQS events -> transform
# -> S3 silver. Each queue has its own DLQ, so an event that ingest cannot finish is kept, not lost.
# Queue pre-created in a restricted account? `eltops provision queue ... --out queue.auto.tfvars.json`
# here: Terraform reads *.auto.tfvars.json automatically and then creates no queue.

terraform {
  # 1.10: backend.hcl's use_lockfile (S3-native state locking); validations that name other variables need 1.9.
  required_version = ">= 1.10.0"
  required_providers {
    aws = {
      # One major version, as tested (tests/e2e/test_terraform_apply.py); .terraform.lock.hcl pins the build.
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }
  backend "s3" {} # settings in backend/backend.hcl: terraform init -backend-config=backend/backend.hcl
}

provider "aws" {
  region = var.region
  # No default_tags: tags would reach IAM roles and SQS queues, which many restricted accounts
  # cannot tag (iam:TagRole, sqs:TagQueue). Tags are passed per resource instead.
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  names = {
    # Bucket names are global: unless given, they carry the account and region to be unique.
    bronze       = coalesce(var.bronze_bucket_name, "${var.name_prefix}-bronze-${local.account_id}-${var.region}")
    silver       = coalesce(var.silver_bucket_name, "${var.name_prefix}-silver-${local.account_id}-${var.region}")
    queue        = "${var.name_prefix}-events"
    ingest_queue = "${var.name_prefix}-ingest-events"
    ledger       = "${var.name_prefix}-ledger"
    ingest       = "${var.name_prefix}-ingest"
    transform    = "${var.name_prefix}-transform"
  }
  role_tags  = var.tag_iam_roles ? var.tags : {}
  queue_tags = var.tag_sqs_queues ? var.tags : {}
  log_arn    = "arn:${data.aws_partition.current.partition}:logs:${var.region}:${data.aws_caller_identity.current.account_id}:log-group:/aws/lambda"

  # The environment variables each handler reads (lambdas/shared/config.py; checked by the tests).
  ingest_environment = {
    ELT_QUEUE_URL           = module.queue.queue_url
    ELT_LEDGER_TABLE        = module.ledger.table_name
    ELT_LEDGER_TTL_DAYS     = tostring(var.ledger_ttl_days)
    ELT_CLAIM_LEASE_SECONDS = tostring(2 * var.ingest_timeout_seconds)
    ELT_LOG_LEVEL           = var.log_level
  }
  transform_environment = {
    ELT_SILVER_BUCKET        = module.storage.silver_bucket
    ELT_LEDGER_TABLE         = module.ledger.table_name
    ELT_LEDGER_TTL_DAYS      = tostring(var.ledger_ttl_days)
    ELT_MAX_JSON_BYTES       = tostring(var.max_json_bytes)
    ELT_ROW_GROUP_ROWS       = tostring(var.row_group_rows)
    ELT_MAX_OBJECT_BYTES     = tostring(var.max_object_bytes)
    ELT_QUARANTINE_MAX_LINES = tostring(var.quarantine_max_lines)
    ELT_QUARANTINE_MAX_BYTES = tostring(var.quarantine_max_bytes)
    ELT_MIN_SECONDS_TO_START = tostring(var.transform_min_seconds_to_start)
    ELT_LOG_LEVEL            = var.log_level
  }
  # /tmp holds the Parquet being written (at most about the decompressed input) and the quarantine
  # staged for one object, plus room for the runtime.
  transform_ephemeral_storage_mb = max(512, ceil((var.max_object_bytes + var.quarantine_max_bytes) / 1048576) + 256)
}

module "storage" {
  source                             = "../../modules/storage"
  kms_key_arn                        = var.kms_key_arn
  bronze_bucket_name                 = local.names.bronze
  silver_bucket_name                 = local.names.silver
  bronze_versioning                  = var.bronze_versioning
  silver_versioning                  = var.silver_versioning
  noncurrent_version_expiration_days = var.noncurrent_version_expiration_days
  quarantine_expiration_days         = var.quarantine_expiration_days
  replay_expiration_days             = var.replay_expiration_days
  force_destroy                      = var.force_destroy
  access_log_bucket                  = var.access_log_bucket
  access_log_prefix                  = var.access_log_prefix
  tags                               = var.tags
}

module "queue" {
  source                     = "../../modules/queue"
  name                       = local.names.queue
  consumer_timeout_seconds   = var.transform_timeout_seconds
  batching_window_seconds    = var.transform_batching_window_seconds
  visibility_timeout_seconds = 6 * var.transform_timeout_seconds + var.transform_batching_window_seconds
  max_receive_count          = var.max_receive_count
  message_retention_seconds  = var.events_retention_seconds
  existing_queue_url         = var.existing_queue_url
  existing_queue_arn         = var.existing_queue_arn
  existing_dlq_url           = var.existing_dlq_url
  existing_dlq_arn           = var.existing_dlq_arn
  kms_key_arn                = var.queue_kms_key_arn
  tags                       = local.queue_tags
}

# S3 notifications for bronze/ go to this queue, and ingest consumes it through an event source
# mapping with partial batch responses: an event ingest cannot finish (SQS or DynamoDB down, a bad
# deploy) is received again and after ingest_max_receive_count receives waits in the ingest DLQ
# for `eltops dlq redrive` (docs/infrastructure.md says why this rather than async invocation).
module "ingest_queue" {
  source                     = "../../modules/queue"
  name                       = local.names.ingest_queue
  consumer_timeout_seconds   = var.ingest_timeout_seconds
  visibility_timeout_seconds = 6 * var.ingest_timeout_seconds
  max_receive_count          = var.ingest_max_receive_count
  message_retention_seconds  = var.events_retention_seconds
  existing_queue_url         = var.existing_ingest_queue_url
  existing_queue_arn         = var.existing_ingest_queue_arn
  existing_dlq_url           = var.existing_ingest_dlq_url
  existing_dlq_arn           = var.existing_ingest_dlq_arn
  kms_key_arn                = var.queue_kms_key_arn
  tags                       = local.queue_tags
}

data "aws_iam_policy_document" "bronze_sends_to_ingest_queue" {
  statement {
    sid       = "BronzeNotifications"
    actions   = ["sqs:SendMessage"]
    resources = [module.ingest_queue.queue_arn]
    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [module.storage.bronze_bucket_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

# A pre-created ingest queue keeps the policy its owner gave it (runbooks/restricted-account-queues.md
# shows the statement it needs); Terraform writes it only on the queue it creates.
resource "aws_sqs_queue_policy" "bronze_sends_to_ingest_queue" {
  count     = var.existing_ingest_queue_url == null && var.existing_ingest_queue_arn == null ? 1 : 0
  queue_url = module.ingest_queue.queue_url
  policy    = data.aws_iam_policy_document.bronze_sends_to_ingest_queue.json
}

module "ledger" {
  source              = "../../modules/ledger"
  table_name          = local.names.ledger
  deletion_protection = var.ledger_deletion_protection
  tags                = var.tags
}

# IAM: exactly the calls the handlers make (tests/test_policy_coverage.py records every
# call made in the functional and end-to-end tests and checks it against these documents), plus what
# the Lambda service does with the role: poll the event source mapping's queue, write logs, traces.
data "aws_iam_policy_document" "ingest" {
  statement {
    sid       = "ConsumeS3Events" # the event source mapping polls with the function's role
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]
    resources = [module.ingest_queue.queue_arn]
  }
  statement {
    sid       = "ClaimInTheLedger" # claim/retake (PutItem), mark_queued (UpdateItem), release (DeleteItem)
    actions   = ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]
    resources = [module.ledger.table_arn]
  }
  statement {
    sid       = "SendWorkUnits"
    actions   = ["sqs:SendMessage"]
    resources = [module.queue.queue_arn]
  }
  dynamic "statement" {
    # SSE-KMS queues: receiving needs kms:Decrypt, sending kms:GenerateDataKey and kms:Decrypt.
    for_each = var.queue_kms_key_arn == null ? [] : [var.queue_kms_key_arn]
    content {
      sid       = "UseTheQueueKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [statement.value]
    }
  }
  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${local.log_arn}/${local.names.ingest}:*"]
  }
  statement {
    sid       = "Tracing"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"] # X-Ray has no resource-level permissions
  }
}

data "aws_iam_policy_document" "transform" {
  statement {
    sid       = "ReadBronze"
    actions   = ["s3:GetObject"]
    resources = ["${module.storage.bronze_bucket_arn}/bronze/*"]
  }
  statement {
    # Without s3:ListBucket S3 answers 403, not 404, for a missing key: a deleted source (bronze)
    # and a silver object not written yet (the collision check's HEAD) would both look like
    # AccessDenied. No s3:prefix condition: that key is only present in ListObjects requests, so
    # a condition on it would not match when S3 decides between 403 and 404 for a HEAD or GET.
    sid       = "TellMissingKeysApart"
    actions   = ["s3:ListBucket"]
    resources = [module.storage.bronze_bucket_arn, module.storage.silver_bucket_arn]
  }
  statement {
    sid       = "CheckSilverOwner" # HeadObject before a write: refuse a silver key collision
    actions   = ["s3:GetObject"]
    resources = ["${module.storage.silver_bucket_arn}/silver/*"]
  }
  statement {
    sid       = "WriteSilverAndQuarantine" # PutObject also covers the multipart upload calls
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload"]
    resources = ["${module.storage.silver_bucket_arn}/silver/*", "${module.storage.silver_bucket_arn}/quarantine/*"]
  }
  statement {
    sid       = "ClearOldQuarantine" # a version without bad lines removes the previous version's rejects
    actions   = ["s3:DeleteObject"]
    resources = ["${module.storage.silver_bucket_arn}/quarantine/*"]
  }
  dynamic "statement" {
    # SSE-KMS buckets: GetObject needs kms:Decrypt, PutObject (and multipart) kms:GenerateDataKey
    # and kms:Decrypt. Only with a key; ingest touches no S3 object, so it gets none.
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]
    content {
      sid       = "UseTheBucketKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [statement.value]
    }
  }
  statement {
    sid       = "ConsumeWorkUnits" # the event source mapping polls with the function's role
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]
    resources = [module.queue.queue_arn]
  }
  dynamic "statement" {
    # An SSE-KMS events queue: the event source mapping's receive needs kms:Decrypt (transform sends nothing).
    for_each = var.queue_kms_key_arn == null ? [] : [var.queue_kms_key_arn]
    content {
      sid       = "DecryptWorkUnits"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]
    }
  }
  statement {
    sid       = "RecordOutcomes" # mark_done / mark_failed
    actions   = ["dynamodb:UpdateItem"]
    resources = [module.ledger.table_arn]
  }
  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${local.log_arn}/${local.names.transform}:*"]
  }
  statement {
    sid       = "Tracing"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"] # X-Ray has no resource-level permissions
  }
}

module "ingest" {
  source                   = "../../modules/lambda_function"
  function_name            = local.names.ingest
  handler                  = "lambdas.ingest.app.handler"
  zip_path                 = "${var.dist_dir}/ingest.zip"
  runtime                  = var.lambda_runtime
  memory_size              = 256
  timeout                  = var.ingest_timeout_seconds
  environment              = local.ingest_environment
  policy_json              = data.aws_iam_policy_document.ingest.json
  reserved_concurrency     = var.ingest_reserved_concurrency
  iam_name_prefix          = var.iam_name_prefix
  permissions_boundary_arn = var.permissions_boundary_arn
  log_kms_key_arn          = var.log_kms_key_arn
  role_tags                = local.role_tags
  log_retention_days       = var.log_retention_days
  tags                     = var.tags
}

module "transform" {
  source                   = "../../modules/lambda_function"
  function_name            = local.names.transform
  handler                  = "lambdas.transform.app.handler"
  zip_path                 = "${var.dist_dir}/transform.zip"
  runtime                  = var.lambda_runtime
  memory_size              = var.transform_memory_mb
  timeout                  = var.transform_timeout_seconds
  layers                   = [var.aws_sdk_pandas_layer_arn]
  environment              = local.transform_environment
  policy_json              = data.aws_iam_policy_document.transform.json
  reserved_concurrency     = var.transform_reserved_concurrency
  ephemeral_storage_mb     = local.transform_ephemeral_storage_mb
  iam_name_prefix          = var.iam_name_prefix
  permissions_boundary_arn = var.permissions_boundary_arn
  log_kms_key_arn          = var.log_kms_key_arn
  role_tags                = local.role_tags
  log_retention_days       = var.log_retention_days
  tags                     = var.tags
}

resource "aws_s3_bucket_notification" "bronze" {
  bucket = module.storage.bronze_bucket_id
  queue {
    queue_arn     = module.ingest_queue.queue_arn
    events        = ["s3:ObjectCreated:*"]
    filter_prefix = "bronze/"
  }
  depends_on = [aws_sqs_queue_policy.bronze_sends_to_ingest_queue]
}

resource "aws_lambda_event_source_mapping" "ingest" {
  event_source_arn                   = module.ingest_queue.queue_arn
  function_name                      = module.ingest.function_arn
  batch_size                         = var.ingest_batch_size
  maximum_batching_window_in_seconds = 0
  function_response_types            = ["ReportBatchItemFailures"]
  scaling_config {
    maximum_concurrency = var.ingest_max_concurrency
  }
}

resource "aws_lambda_event_source_mapping" "transform" {
  event_source_arn                   = module.queue.queue_arn
  function_name                      = module.transform.function_arn
  batch_size                         = var.transform_batch_size
  maximum_batching_window_in_seconds = var.transform_batching_window_seconds
  function_response_types            = ["ReportBatchItemFailures"]
  scaling_config {
    maximum_concurrency = var.transform_max_concurrency
  }
}

module "observability" {
  source                     = "../../modules/observability"
  enabled                    = var.observability_enabled
  name_prefix                = var.name_prefix
  region                     = var.region
  queue_name                 = module.queue.queue_name
  dlq_enabled                = module.queue.has_dlq
  dlq_name                   = module.queue.dlq_name
  ingest_queue_name          = module.ingest_queue.queue_name
  ingest_dlq_name            = module.ingest_queue.dlq_name
  ingest_function_name       = module.ingest.function_name
  transform_function_name    = module.transform.function_name
  oldest_message_age_seconds = var.oldest_message_alarm_seconds
  alarm_actions              = var.alarm_actions
}

# Warnings on every plan (check blocks never fail it): what a deployment that holds real data must turn on.
check "alarms_reach_someone" {
  assert {
    condition     = var.observability_enabled && length(var.alarm_actions) > 0
    error_message = "No alarm notifies anyone (observability_enabled = false or alarm_actions empty): a full DLQ or work units ageing towards the queues' retention go unnoticed. Set observability_enabled = true and alarm_actions = [an SNS topic ARN]."
  }
}

check "events_queue_has_a_dlq" {
  assert {
    condition     = module.queue.has_dlq
    error_message = "The events queue has no DLQ (provisioned with --without-dlq): a poison object is retried until the queue's retention drops it. Attach one with eltops provision ensure-dlq and rerun provision with --out."
  }
}
