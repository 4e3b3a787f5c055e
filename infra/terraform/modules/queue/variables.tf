variable "name" {
  description = "Queue name (the events queue, or ingest's S3-event queue); the DLQ is <name>-dlq."
  type        = string
}

variable "consumer_timeout_seconds" {
  description = "Timeout of the Lambda that consumes the queue; the visibility timeout must be at least 6 times it."
  type        = number
}

variable "batching_window_seconds" {
  description = "The consuming event source mapping's batching window; the visibility timeout must cover it too."
  type        = number
  default     = 0
}

variable "visibility_timeout_seconds" {
  description = "Visibility timeout of the queue."
  type        = number
}

variable "max_receive_count" {
  description = "Receives before a message moves to the DLQ."
  type        = number
  default     = 5
}

variable "message_retention_seconds" {
  description = "Retention of the queue: below its DLQ's 14 days, which count from a message's first enqueue."
  type        = number
  default     = 1123200
}

variable "existing_queue_url" {
  description = "URL of a pre-created queue (from eltops provision queue); the module then creates nothing."
  type        = string
  default     = null
}

variable "existing_queue_arn" {
  description = "ARN of the pre-created queue."
  type        = string
  default     = null
}

variable "existing_dlq_url" {
  description = "URL of the pre-created DLQ."
  type        = string
  default     = null
}

variable "existing_dlq_arn" {
  description = "ARN of the pre-created DLQ."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for the queues (empty by default: many restricted accounts lack sqs:TagQueue)."
  type        = map(string)
  default     = {}
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for the queue and its DLQ when Terraform creates them; null uses SSE-SQS. A pre-created queue keeps its own encryption."
  type        = string
  default     = null
}
