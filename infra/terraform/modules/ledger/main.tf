# The object ledger (idempotency table): pk = s3://bucket/key, sort key etag; TTL on expiration.

resource "aws_dynamodb_table" "ledger" {
  #checkov:skip=CKV_AWS_119:Encrypted at rest with the AWS-managed key (aws/dynamodb): the ledger holds object keys, ETags and counts, no record data; the module's kms_key_arn input takes a customer-managed key.
  name         = var.table_name
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "pk"
  range_key    = "etag"

  attribute {
    name = "pk"
    type = "S"
  }

  attribute {
    name = "etag"
    type = "S"
  }

  ttl {
    attribute_name = "expiration"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = var.kms_key_arn
  }

  deletion_protection_enabled = var.deletion_protection
  tags                        = var.tags
}
