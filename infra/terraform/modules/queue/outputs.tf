locals {
  queue_arn = local.create ? aws_sqs_queue.events[0].arn : var.existing_queue_arn
  dlq_arn   = local.create ? aws_sqs_queue.dlq[0].arn : var.existing_dlq_arn
}

output "queue_url" {
  value = local.create ? aws_sqs_queue.events[0].id : var.existing_queue_url
}

output "queue_arn" {
  value = local.queue_arn
}

output "queue_name" {
  description = "The queue's name (the last part of its ARN), for CloudWatch dimensions."
  value       = element(split(":", local.queue_arn), 5)
}

output "dlq_url" {
  value = local.create ? aws_sqs_queue.dlq[0].id : var.existing_dlq_url
}

output "dlq_arn" {
  value = local.dlq_arn
}

output "dlq_name" {
  description = "null when a pre-created queue has no DLQ (eltops provision queue --without-dlq)."
  value       = local.dlq_arn == null ? null : element(split(":", local.dlq_arn), 5)
}

output "has_dlq" {
  description = "Known at plan time (unlike the ARN of a DLQ still to be created)."
  value       = local.create || var.existing_dlq_arn != null
}
