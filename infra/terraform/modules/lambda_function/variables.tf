variable "function_name" {
  description = "Lambda function name."
  type        = string
}

variable "handler" {
  description = "lambdas.<name>.app.handler: the import path in the zip that make build produces."
  type        = string
}

variable "zip_path" {
  description = "The function's zip (dist/<name>.zip from make build)."
  type        = string
}

variable "policy_json" {
  description = "Least-privilege IAM policy for the function's role (no * actions)."
  type        = string
}

variable "environment" {
  description = "Environment variables (the names in lambdas/shared/config.py)."
  type        = map(string)
}

variable "runtime" {
  description = "Lambda runtime."
  type        = string
  default     = "python3.12"
}

variable "memory_size" {
  description = "Memory in MB (also sets the CPU share)."
  type        = number
  default     = 512
}

variable "timeout" {
  description = "Timeout in seconds."
  type        = number
  default     = 60
}

variable "layers" {
  description = "Layer ARNs (transform: the AWS SDK for pandas layer, which supplies pyarrow)."
  type        = list(string)
  default     = []
}

variable "reserved_concurrency" {
  description = "Reserved concurrent executions; null reserves none (the account's unreserved pool)."
  type        = number
  default     = null
}

variable "ephemeral_storage_mb" {
  description = "Size of /tmp in MB (512 to 10240)."
  type        = number
  default     = 512
  validation {
    condition     = var.ephemeral_storage_mb >= 512 && var.ephemeral_storage_mb <= 10240
    error_message = "ephemeral_storage_mb must be between 512 and 10240 (Lambda's limits)."
  }
}

variable "iam_name_prefix" {
  description = "Prefix for the IAM role name (restricted accounts often require one)."
  type        = string
  default     = ""
}

variable "permissions_boundary_arn" {
  description = "Permissions boundary for the role, if the account requires one."
  type        = string
  default     = null
}

variable "role_tags" {
  description = "Tags for the IAM role (empty by default: many restricted accounts lack iam:TagRole)."
  type        = map(string)
  default     = {}
}

variable "log_retention_days" {
  description = "CloudWatch Logs retention."
  type        = number
  default     = 14
}

variable "log_kms_key_arn" {
  description = "KMS key for the log group; null uses CloudWatch's encryption."
  type        = string
  default     = null
}

variable "dead_letter_target_arn" {
  description = "SQS/SNS target for failed asynchronous invocations (ingest); null for none."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for the function and its log group."
  type        = map(string)
  default     = {}
}
