variable "name" {
  description = "Events queue name; the DLQ is <name>-dlq."
  type        = string
}

variable "transform_timeout_seconds" {
  description = "The transform Lambda's timeout; the visibility timeout must be at least 6 times it."
  type        = number
}

variable "visibility_timeout_seconds" {
  description = "Events queue visibility timeout."
  type        = number
}

variable "max_receive_count" {
  description = "Receives before a message moves to the DLQ."
  type        = number
  default     = 5
}

variable "message_retention_seconds" {
  description = "Events queue retention."
  type        = number
  default     = 345600
}

variable "existing_queue_url" {
  description = "URL of a pre-created events queue (from eltops provision queue); the module then creates nothing."
  type        = string
  default     = null
}

variable "existing_queue_arn" {
  description = "ARN of the pre-created events queue."
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
