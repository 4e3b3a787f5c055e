variable "bronze_bucket_name" {
  description = "Bronze bucket (raw JSON/JSONL events under bronze/)."
  type        = string
}

variable "silver_bucket_name" {
  description = "Silver bucket (Parquet under silver/, rejected lines under quarantine/)."
  type        = string
}

variable "bronze_versioning" {
  description = "Bronze versioning: Enabled, Suspended (a bucket that was versioned), or Disabled (never versioned)."
  type        = string
  default     = "Enabled"
  validation {
    condition     = contains(["Enabled", "Suspended", "Disabled"], var.bronze_versioning)
    error_message = "bronze_versioning must be Enabled, Suspended or Disabled."
  }
}

variable "silver_versioning" {
  description = "Silver versioning: Enabled, Suspended (a bucket that was versioned), or Disabled (never versioned)."
  type        = string
  default     = "Disabled"
  validation {
    condition     = contains(["Enabled", "Suspended", "Disabled"], var.silver_versioning)
    error_message = "silver_versioning must be Enabled, Suspended or Disabled."
  }
}

variable "noncurrent_version_expiration_days" {
  description = "Days a noncurrent object version is kept in a versioned bucket."
  type        = number
  default     = 30
}

variable "access_log_bucket" {
  description = "Existing bucket receiving bronze's S3 server access logs; null for none."
  type        = string
  default     = null
}

variable "access_log_prefix" {
  description = "Prefix of bronze's access logs in access_log_bucket (the bucket name is appended)."
  type        = string
  default     = "s3-access/"
}

variable "quarantine_expiration_days" {
  description = "Days quarantine/ objects are kept."
  type        = number
  default     = 90
}

variable "replay_expiration_days" {
  description = "Days bronze/replay/ copies are kept (the originals stay in place)."
  type        = number
  default     = 7
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for both buckets; null uses SSE-S3."
  type        = string
  default     = null
}

variable "force_destroy" {
  description = "Allow destroying non-empty buckets (dev only)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags for the buckets."
  type        = map(string)
  default     = {}
}
