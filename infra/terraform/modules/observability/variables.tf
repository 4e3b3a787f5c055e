variable "enabled" {
  description = "Create the alarms and the dashboard."
  type        = bool
  default     = false
}

variable "name_prefix" {
  description = "Prefix for alarm and dashboard names."
  type        = string
}

variable "region" {
  description = "Region shown by the dashboard."
  type        = string
}

variable "queue_name" {
  description = "Events queue name."
  type        = string
}

variable "dlq_enabled" {
  description = "The events queue has a DLQ (a pre-created queue may have none)."
  type        = bool
  default     = true
}

variable "dlq_name" {
  description = "DLQ name; null when the events queue has none (no DLQ alarm then)."
  type        = string
  default     = null
}

variable "ingest_queue_name" {
  description = "Ingest queue name (S3 events for ingest)."
  type        = string
}

variable "ingest_dlq_name" {
  description = "Ingest DLQ name (S3 events ingest could not finish)."
  type        = string
}

variable "ingest_function_name" {
  description = "Ingest Lambda name."
  type        = string
}

variable "transform_function_name" {
  description = "Transform Lambda name."
  type        = string
}

variable "oldest_message_age_seconds" {
  description = "Alarm when the oldest events message is older than this."
  type        = number
  default     = 900
}

variable "quarantine_rate_threshold" {
  description = "Alarm when more than this share of transformed lines goes to quarantine in 15 minutes."
  type        = number
  default     = 0.05
}

variable "silver_freshness_seconds" {
  description = "Alarm when no object is written to silver for this long (whole hours, at most 24)."
  type        = number
  default     = 21600

  validation {
    condition     = var.silver_freshness_seconds >= 3600 && var.silver_freshness_seconds <= 86400
    error_message = "silver_freshness_seconds must be between 3600 and 86400 (CloudWatch evaluates at most a day)."
  }
}

variable "alarm_actions" {
  description = "ARNs notified when an alarm fires or clears (e.g. an SNS topic)."
  type        = list(string)
  default     = []
}
