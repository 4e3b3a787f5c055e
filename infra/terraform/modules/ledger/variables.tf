variable "table_name" {
  description = "Ledger table name."
  type        = string
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key; null uses the AWS-managed key (aws/dynamodb), since encryption is enabled."
  type        = string
  default     = null
}

variable "deletion_protection" {
  description = "Protect the table from deletion."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags for the table."
  type        = map(string)
  default     = {}
}
