variable "region" {
  description = "AWS region."
  type        = string
}

variable "name_prefix" {
  description = "Prefix of every resource name: <prefix>-bronze, -silver, -events, -events-dlq, -ingest-events, -ingest-events-dlq, -ledger, -ingest, -transform."
  type        = string
}

variable "iam_name_prefix" {
  description = "Prefix for IAM role names (some accounts only allow roles under a prefix)."
  type        = string
  default     = ""
}

variable "tags" {
  description = "Tags for buckets, table, functions and log groups."
  type        = map(string)
  default     = {}
}

variable "tag_iam_roles" {
  description = "Also tag IAM roles (needs iam:TagRole, which many restricted accounts lack)."
  type        = bool
  default     = false
}

variable "tag_sqs_queues" {
  description = "Also tag SQS queues (needs sqs:TagQueue, which many restricted accounts lack)."
  type        = bool
  default     = false
}

variable "dist_dir" {
  description = "Folder with ingest.zip and transform.zip (make build)."
  type        = string
  default     = "../../../../dist"
}

variable "lambda_runtime" {
  description = "Python runtime of both functions."
  type        = string
  default     = "python3.12"
}

variable "aws_sdk_pandas_layer_arn" {
  description = "AWS SDK for pandas layer ARN for the region and runtime; it supplies pyarrow (>= 14) and numpy to transform."
  type        = string
}

variable "ingest_timeout_seconds" {
  description = "Ingest timeout; the claim lease is twice this."
  type        = number
  default     = 30
}

variable "ingest_batch_size" {
  description = "S3 events per ingest invocation from the ingest queue."
  type        = number
  default     = 10
}

variable "ingest_max_concurrency" {
  description = "Maximum concurrent ingest invocations from the ingest queue (2 to below the reserved concurrency, so throttles do not count as receives)."
  type        = number
  default     = 10
}

variable "ingest_max_receive_count" {
  description = "Receives of an S3 event before it moves to the ingest DLQ."
  type        = number
  default     = 5
}

variable "existing_ingest_queue_url" {
  description = "Pre-created ingest queue URL (restricted accounts; see runbooks/restricted-account-queues.md)."
  type        = string
  default     = null
}

variable "existing_ingest_queue_arn" {
  description = "Pre-created ingest queue ARN."
  type        = string
  default     = null
}

variable "existing_ingest_dlq_url" {
  description = "Pre-created ingest DLQ URL."
  type        = string
  default     = null
}

variable "existing_ingest_dlq_arn" {
  description = "Pre-created ingest DLQ ARN."
  type        = string
  default     = null
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for both buckets (SSE-KMS); null uses SSE-S3. With a key, transform's role gets kms:Decrypt and kms:GenerateDataKey on it."
  type        = string
  default     = null
}

variable "ingest_reserved_concurrency" {
  description = "Reserved concurrency of ingest."
  type        = number
  default     = 20
}

variable "transform_timeout_seconds" {
  description = "Transform timeout; the events queue's visibility timeout is six times this."
  type        = number
  default     = 300
}

variable "transform_memory_mb" {
  description = "Transform memory (1769 MB is one full vCPU)."
  type        = number
  default     = 1769
}

variable "transform_reserved_concurrency" {
  description = "Reserved concurrency of transform."
  type        = number
  default     = 50
}

variable "transform_batch_size" {
  description = "Work units per transform invocation."
  type        = number
  default     = 10
}

variable "transform_batching_window_seconds" {
  description = "How long the event source mapping gathers a batch."
  type        = number
  default     = 5
}

variable "transform_max_concurrency" {
  description = "Maximum concurrent transform invocations from the queue (2 to the reserved concurrency)."
  type        = number
  default     = 20
}

variable "max_receive_count" {
  description = "Receives before a work unit moves to the DLQ."
  type        = number
  default     = 5
}

variable "existing_queue_url" {
  description = "Pre-created events queue (written by eltops provision queue into *.auto.tfvars.json)."
  type        = string
  default     = null
}

variable "existing_queue_arn" {
  description = "Pre-created events queue ARN."
  type        = string
  default     = null
}

variable "existing_dlq_url" {
  description = "Pre-created DLQ URL."
  type        = string
  default     = null
}

variable "existing_dlq_arn" {
  description = "Pre-created DLQ ARN."
  type        = string
  default     = null
}

variable "ledger_ttl_days" {
  description = "Days a ledger item lives."
  type        = number
  default     = 30
}

variable "ledger_deletion_protection" {
  description = "Protect the ledger table from deletion."
  type        = bool
  default     = true
}

variable "max_json_bytes" {
  description = "Largest JSON array/document transform reads whole."
  type        = number
  default     = 67108864
}

variable "max_object_bytes" {
  description = "Largest bronze object (decompressed) transform reads; past it the object is a failed item."
  type        = number
  default     = 4294967296
}

variable "quarantine_max_lines" {
  description = "Quarantine records kept per object; past it one summary record counts the rest."
  type        = number
  default     = 10000
}

variable "quarantine_max_bytes" {
  description = "Quarantine bytes kept per object (staged in the Lambda's /tmp)."
  type        = number
  default     = 67108864
}

variable "row_group_rows" {
  description = "Rows per Parquet row group."
  type        = number
  default     = 131072
}

variable "log_level" {
  description = "Lambda log level."
  type        = string
  default     = "INFO"
}

variable "log_retention_days" {
  description = "CloudWatch Logs retention."
  type        = number
  default     = 14
}

variable "versioning_enabled" {
  description = "Keep object versions in the buckets."
  type        = bool
  default     = false
}

variable "quarantine_expiration_days" {
  description = "Days quarantine/ objects are kept."
  type        = number
  default     = 90
}

variable "replay_expiration_days" {
  description = "Days bronze/replay/ copies are kept."
  type        = number
  default     = 7
}

variable "force_destroy" {
  description = "Allow destroying non-empty buckets."
  type        = bool
  default     = false
}

variable "observability_enabled" {
  description = "Create alarms and the dashboard."
  type        = bool
  default     = false
}

variable "oldest_message_alarm_seconds" {
  description = "Alarm when the oldest work unit is older than this."
  type        = number
  default     = 900
}

variable "alarm_actions" {
  description = "ARNs notified by the alarms."
  type        = list(string)
  default     = []
}
