# A queue consumed by a Lambda event source mapping, and its DLQ: used for the events queue
# (work units -> transform) and the ingest queue (S3 events -> ingest). Not created when the queue
# already exists (restricted accounts pre-create them with `eltops provision queue`).

locals {
  create = var.existing_queue_url == null && var.existing_queue_arn == null
}

resource "aws_sqs_queue" "dlq" {
  count                     = local.create ? 1 : 0
  name                      = "${var.name}-dlq"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
  tags                      = var.tags
}

resource "aws_sqs_queue" "events" {
  count                      = local.create ? 1 : 0
  name                       = var.name
  visibility_timeout_seconds = var.visibility_timeout_seconds
  message_retention_seconds  = var.message_retention_seconds
  receive_wait_time_seconds  = 20
  sqs_managed_sse_enabled    = true
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq[0].arn
    maxReceiveCount     = var.max_receive_count
  })
  tags = var.tags

  lifecycle {
    precondition {
      condition     = var.visibility_timeout_seconds >= 6 * var.consumer_timeout_seconds
      error_message = "visibility_timeout_seconds must be at least 6 x consumer_timeout_seconds (AWS guidance for SQS event sources)."
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
