variable "bronze_bucket_name" {
  description = "Bronze bucket (raw JSON/JSONL events under bronze/)."
  type        = string
}

variable "silver_bucket_name" {
  description = "Silver bucket (Parquet under silver/, rejected lines under quarantine/)."
  type        = string
}

variable "versioning_enabled" {
  description = "Keep object versions in both buckets."
  type        = bool
  default     = false
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
