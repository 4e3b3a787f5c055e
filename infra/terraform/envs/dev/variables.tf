variable "region" {
  description = "AWS region."
  type        = string
}

variable "name_prefix" {
  description = "Prefix of every resource name: <prefix>-events, -events-dlq, -ingest-events, -ingest-events-dlq, -ledger, -ingest, -transform; buckets <prefix>-bronze-<account>-<region> and -silver-… unless named."
  type        = string
  validation {
    # 28 characters leave room for "-silver-<12-digit account>-<longest region>" in 63.
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,26}[a-z0-9])?$", var.name_prefix))
    error_message = "name_prefix must be 1-28 lowercase letters, digits or hyphens, not starting or ending with a hyphen (it becomes part of bucket names)."
  }
}

variable "bronze_bucket_name" {
  description = "Bronze bucket name; null derives <name_prefix>-bronze-<account>-<region> (bucket names are global)."
  type        = string
  default     = null
  validation {
    condition     = var.bronze_bucket_name == null ? true : can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bronze_bucket_name))
    error_message = "bronze_bucket_name must be a valid S3 bucket name: 3-63 lowercase letters, digits, dots or hyphens."
  }
}

variable "silver_bucket_name" {
  description = "Silver bucket name; null derives <name_prefix>-silver-<account>-<region>."
  type        = string
  default     = null
  validation {
    condition     = var.silver_bucket_name == null ? true : can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.silver_bucket_name))
    error_message = "silver_bucket_name must be a valid S3 bucket name: 3-63 lowercase letters, digits, dots or hyphens."
  }
}

variable "permissions_boundary_arn" {
  description = "Permissions boundary put on every IAM role this stack creates (accounts that require one)."
  type        = string
  default     = null
}

variable "log_kms_key_arn" {
  description = "Customer-managed KMS key for the functions' log groups (its key policy must allow CloudWatch Logs); null for CloudWatch's encryption."
  type        = string
  default     = null
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
  description = "AWS SDK for pandas layer ARN for the region and runtime (https://aws-sdk-pandas.readthedocs.io/en/stable/layers.html); it supplies pyarrow (>= 14) and numpy to transform."
  type        = string
  validation {
    condition     = can(regex("^arn:aws[a-z-]*:lambda:[a-z0-9-]+:[0-9]{12}:layer:AWSSDKPandas-Python3[0-9]+(-Arm64)?:[0-9]+$", var.aws_sdk_pandas_layer_arn))
    error_message = "aws_sdk_pandas_layer_arn must be an AWS SDK for pandas layer version ARN like arn:aws:lambda:eu-west-1:336392948345:layer:AWSSDKPandas-Python312:16."
  }
  validation {
    # A layer is regional: a function cannot use another region's layer.
    condition     = try(split(":", var.aws_sdk_pandas_layer_arn)[3], "") == var.region
    error_message = "aws_sdk_pandas_layer_arn is not in var.region: take the ARN for that region from https://aws-sdk-pandas.readthedocs.io/en/stable/layers.html."
  }
  validation {
    # AWSSDKPandas-Python312 is built for python3.12: pyarrow's compiled parts fail on another runtime.
    condition     = try(regex("layer:AWSSDKPandas-Python([0-9]+)", var.aws_sdk_pandas_layer_arn)[0], "") == replace(trimprefix(var.lambda_runtime, "python"), ".", "")
    error_message = "aws_sdk_pandas_layer_arn is built for another Python than lambda_runtime: take the AWSSDKPandas-PythonXY layer matching the runtime."
  }
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
  description = "Maximum concurrent ingest invocations from the ingest queue (2 to 1000, and not above the reserved concurrency, so throttles do not count as receives)."
  type        = number
  default     = 10
  validation {
    condition     = var.ingest_max_concurrency >= 2 && var.ingest_max_concurrency <= 1000
    error_message = "ingest_max_concurrency must be between 2 and 1000 (the event source mapping's limits)."
  }
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
variable "existing_ingest_queue_visibility_timeout_seconds" {
  description = "The pre-created ingest queue's VisibilityTimeout (eltops provision queue --for ingest writes it); checked against 6 x ingest_timeout_seconds."
  type        = number
  default     = null
  validation {
    condition     = var.existing_ingest_queue_url == null && var.existing_ingest_queue_arn == null ? true : coalesce(var.existing_ingest_queue_visibility_timeout_seconds, -1) >= 6 * var.ingest_timeout_seconds
    error_message = "The pre-created ingest queue's visibility timeout (existing_ingest_queue_visibility_timeout_seconds) is missing or below 6 x ingest_timeout_seconds: its event source mapping would fail. Rerun eltops provision queue --for ingest with --consumer-timeout (it sets the timeout and writes it here)."
  }
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

variable "queue_kms_key_arn" {
  description = "Customer-managed KMS key of the queues (SSE-KMS), for queues a platform team pre-created with one, or for the queues Terraform creates; null keeps SSE-SQS. With a key, ingest's role gets kms:GenerateDataKey and kms:Decrypt on it (it receives S3 events and sends work units) and transform's kms:Decrypt (it receives). The key policy must also let s3.amazonaws.com use it, or S3 cannot deliver bronze notifications to the ingest queue."
  type        = string
  default     = null
  validation {
    condition     = var.queue_kms_key_arn == null ? true : can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:(key|alias)/.+$", var.queue_kms_key_arn))
    error_message = "queue_kms_key_arn must be a KMS key or alias ARN (arn:aws:kms:<region>:<account>:key/<id>), or null for SSE-SQS."
  }
}

variable "ingest_reserved_concurrency" {
  description = "Reserved concurrency of ingest; null reserves none (AWS keeps 100 of an account's concurrency unreserved, so reservations fail in new accounts). When set, at least 5 and at least ingest_max_concurrency."
  type        = number
  default     = null
  validation {
    condition     = var.ingest_reserved_concurrency == null ? true : (var.ingest_reserved_concurrency >= 5 && var.ingest_reserved_concurrency >= var.ingest_max_concurrency)
    error_message = "ingest_reserved_concurrency must be null (none), or at least 5 and at least ingest_max_concurrency (0 would stop ingest; fewer than the mapping's maximum throttles it)."
  }
}

variable "transform_timeout_seconds" {
  description = "Transform timeout; the events queue's visibility timeout is six times this plus the batching window."
  type        = number
  default     = 300
  validation {
    condition     = var.transform_timeout_seconds >= 1 && var.transform_timeout_seconds <= 900
    error_message = "transform_timeout_seconds must be between 1 and 900 (Lambda's limit)."
  }
}
variable "transform_min_seconds_to_start" {
  description = "Transform starts a batch's next item only while more than this many seconds of the invocation remain; the rest are reported as failed items and retried (not lost to a timeout that would retry the whole batch)."
  type        = number
  default     = 60
  validation {
    condition     = var.transform_min_seconds_to_start >= 0 && var.transform_min_seconds_to_start < var.transform_timeout_seconds
    error_message = "transform_min_seconds_to_start must be at least 0 and below transform_timeout_seconds."
  }
}

variable "transform_memory_mb" {
  description = "Transform memory (1769 MB is one full vCPU)."
  type        = number
  default     = 1769
}

variable "transform_reserved_concurrency" {
  description = "Reserved concurrency of transform; null reserves none. When set, at least 5 and at least transform_max_concurrency, or the event source mapping is throttled."
  type        = number
  default     = null
  validation {
    condition     = var.transform_reserved_concurrency == null ? true : (var.transform_reserved_concurrency >= 5 && var.transform_reserved_concurrency >= var.transform_max_concurrency)
    error_message = "transform_reserved_concurrency must be null (none), or at least 5 and at least transform_max_concurrency."
  }
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
  description = "Maximum concurrent transform invocations from the queue (2 to 1000, and not above the reserved concurrency)."
  type        = number
  default     = 20
  validation {
    condition     = var.transform_max_concurrency >= 2 && var.transform_max_concurrency <= 1000
    error_message = "transform_max_concurrency must be between 2 and 1000 (the event source mapping's limits)."
  }
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
  validation {
    # FIFO event source mappings allow no batching window, and ingest sends no MessageGroupId.
    condition     = var.existing_queue_arn == null ? true : !endswith(var.existing_queue_arn, ".fifo")
    error_message = "existing_queue_arn names a FIFO queue: the events queue must be a standard queue (ingest sends no MessageGroupId; a FIFO event source mapping allows no batching window)."
  }
}
variable "existing_queue_visibility_timeout_seconds" {
  description = "The pre-created events queue's VisibilityTimeout (eltops provision writes it); checked against 6 x transform_timeout_seconds + transform_batching_window_seconds."
  type        = number
  default     = null
  validation {
    condition     = var.existing_queue_url == null && var.existing_queue_arn == null ? true : coalesce(var.existing_queue_visibility_timeout_seconds, -1) >= 6 * var.transform_timeout_seconds + var.transform_batching_window_seconds
    error_message = "The pre-created events queue's visibility timeout (existing_queue_visibility_timeout_seconds) is missing or below 6 x transform_timeout_seconds + transform_batching_window_seconds: the event source mapping would fail. Rerun eltops provision queue with --consumer-timeout and --batching-window (it sets the timeout and writes it here)."
  }
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
  description = "Largest bronze object (decompressed) transform reads; past it the object is a failed item. Transform's /tmp (ephemeral storage) is sized from it."
  type        = number
  default     = 4294967296
  validation {
    condition     = ceil((var.max_object_bytes + var.quarantine_max_bytes) / 1048576) + 256 <= 10240
    error_message = "max_object_bytes + quarantine_max_bytes (+ 256 MB) must fit in Lambda's largest /tmp, 10240 MB: transform spools an object's Parquet and quarantine there."
  }
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

variable "bronze_versioning" {
  description = "Bronze versioning: Enabled (undo an overwrite or delete of raw data), Suspended (a bucket versioned before), or Disabled (never versioned)."
  type        = string
  default     = "Enabled"
  validation {
    condition     = contains(["Enabled", "Suspended", "Disabled"], var.bronze_versioning)
    error_message = "bronze_versioning must be Enabled, Suspended (a bucket that was versioned before) or Disabled (never versioned)."
  }
}
variable "silver_versioning" {
  description = "Silver versioning (silver is rebuilt from bronze): Enabled, Suspended, or Disabled (never versioned)."
  type        = string
  default     = "Disabled"
  validation {
    condition     = contains(["Enabled", "Suspended", "Disabled"], var.silver_versioning)
    error_message = "silver_versioning must be Enabled, Suspended (a bucket that was versioned before) or Disabled (never versioned)."
  }
}
variable "noncurrent_version_expiration_days" {
  description = "Days a noncurrent version is kept in a versioned bucket (expired delete markers go too)."
  type        = number
  default     = 30
}
variable "access_log_bucket" {
  description = "Existing bucket for bronze's S3 server access logs (who read the raw data); null for none. Its policy must let logging.s3.amazonaws.com write."
  type        = string
  default     = null
}
variable "access_log_prefix" {
  description = "Prefix of bronze's access logs in access_log_bucket."
  type        = string
  default     = "s3-access/"
}
variable "events_retention_seconds" {
  description = "Events queue retention (13 days: the most that stays below the DLQ's 14, which count from a message's first enqueue)."
  type        = number
  default     = 1123200
  validation {
    condition     = var.events_retention_seconds >= 60 && var.events_retention_seconds < 1209600
    error_message = "events_retention_seconds must be at least 60 and below the DLQ's 1209600 (14 days)."
  }
}

variable "quarantine_expiration_days" {
  description = "Days quarantine/ objects are kept."
  type        = number
  default     = 90
}

variable "replay_expiration_days" {
  description = "Days bronze/replay/ copies are kept: longer than a work unit can wait in the queues (14 days in the DLQ), so a late redrive still finds its copy."
  type        = number
  default     = 15
  validation {
    condition     = var.replay_expiration_days >= 15
    error_message = "replay_expiration_days must be at least 15: a work unit for a copy can wait up to 14 days in the DLQ, and a redrive after the copy expired finds nothing to read."
  }
}

variable "force_destroy" {
  description = "Allow destroying non-empty buckets (throwaway stacks only: destroy, or a renamed bucket, then deletes every object and version)."
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
