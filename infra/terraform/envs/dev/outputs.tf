# Same meaning as the ELT_* variables that `eltops local up` exports.

output "bronze_bucket" {
  description = "ELT_BRONZE_BUCKET"
  value       = module.storage.bronze_bucket
}

output "silver_bucket" {
  description = "ELT_SILVER_BUCKET"
  value       = module.storage.silver_bucket
}

output "queue_url" {
  description = "ELT_QUEUE_URL"
  value       = module.queue.queue_url
}

output "dlq_url" {
  description = "ELT_DLQ_URL"
  value       = module.queue.dlq_url
}

output "ingest_queue_url" {
  description = "ELT_INGEST_QUEUE_URL"
  value       = module.ingest_queue.queue_url
}

output "ingest_dlq_url" {
  description = "ELT_INGEST_DLQ_URL"
  value       = module.ingest_queue.dlq_url
}

output "ledger_table" {
  description = "ELT_LEDGER_TABLE"
  value       = module.ledger.table_name
}

output "ingest_function" {
  value = module.ingest.function_name
}

output "transform_function" {
  value = module.transform.function_name
}

output "eltops_environment" {
  description = "Paste as exports for eltops: terraform output -json eltops_environment"
  value = {
    ELT_BRONZE_BUCKET    = module.storage.bronze_bucket
    ELT_SILVER_BUCKET    = module.storage.silver_bucket
    ELT_QUEUE_URL        = module.queue.queue_url
    ELT_DLQ_URL          = module.queue.dlq_url
    ELT_INGEST_QUEUE_URL = module.ingest_queue.queue_url
    ELT_INGEST_DLQ_URL   = module.ingest_queue.dlq_url
    ELT_LEDGER_TABLE     = module.ledger.table_name
  }
}
