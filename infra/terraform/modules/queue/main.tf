# A queue consumed by a Lambda event source mapping, and its DLQ: used for the events queue
# (work units -> transform) and the ingest queue (S3 events -> ingest). Not created when the queue
# already exists (restricted accounts pre-create them with `eltops provision queue`).

locals {
  create = var.existing_queue_url == null && var.existing_queue_arn == null
  # Lambda's event source mapping needs the visibility timeout to cover the function's timeout plus
  # the batching window; AWS advises 6x the timeout so that retries of throttled batches fit.
  minimum_visibility_timeout = 6 * var.consumer_timeout_seconds + var.batching_window_seconds
}

resource "aws_sqs_queue" "dlq" {
  count                     = local.create ? 1 : 0
  name                      = "${var.name}-dlq"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = var.kms_key_arn == null ? true : null
  kms_master_key_id         = var.kms_key_arn
  tags                      = var.tags
}

resource "aws_sqs_queue" "events" {
  count                      = local.create ? 1 : 0
  name                       = var.name
  visibility_timeout_seconds = var.visibility_timeout_seconds
  message_retention_seconds  = var.message_retention_seconds
  receive_wait_time_seconds  = 20
  sqs_managed_sse_enabled    = var.kms_key_arn == null ? true : null
  kms_master_key_id          = var.kms_key_arn
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq[0].arn
    maxReceiveCount     = var.max_receive_count
  })
  tags = var.tags

  lifecycle {
    precondition {
      condition     = var.visibility_timeout_seconds >= local.minimum_visibility_timeout
      error_message = "visibility_timeout_seconds must be at least 6 x consumer_timeout_seconds + the batching window (AWS guidance for SQS event sources)."
    }
    precondition {
      # SQS keeps a moved message's original enqueue time: a DLQ that expires messages no later
      # than the source queue could drop them on arrival.
      condition     = var.message_retention_seconds < 1209600
      error_message = "message_retention_seconds must stay below the DLQ's 1209600 s (14 days)."
    }
  }
}

resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  count     = local.create ? 1 : 0
  queue_url = aws_sqs_queue.dlq[0].id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.events[0].arn]
  })
}
