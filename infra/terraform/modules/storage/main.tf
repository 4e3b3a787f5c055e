# Bronze and silver buckets: public access blocked, encrypted, TLS-only, optional versioning, and
# lifecycle rules for quarantine/ (silver) and bronze/replay/ copies (bronze).

locals {
  buckets = {
    bronze = var.bronze_bucket_name
    silver = var.silver_bucket_name
  }
  expiring = {
    bronze = { name = "replay-copies", prefix = "bronze/replay/", days = var.replay_expiration_days }
    silver = { name = "quarantine", prefix = "quarantine/", days = var.quarantine_expiration_days }
  }
}

resource "aws_s3_bucket" "this" {
  #checkov:skip=CKV_AWS_18:Access logging needs a separate log bucket; enable it per account through the organisation's logging bucket.
  #checkov:skip=CKV_AWS_144:Cross-region replication is a disaster-recovery choice per environment, not a pipeline requirement.
  #checkov:skip=CKV_AWS_145:SSE-S3 (AES256) is used; a customer-managed KMS key can be set through var.kms_key_arn.
  #checkov:skip=CKV_AWS_21:Versioning is optional (var.versioning_enabled); the pipeline is idempotent and bronze copies are replayable.
  #checkov:skip=CKV2_AWS_62:Bronze notifications are configured in the environment (S3 -> ingest); silver has no consumers to notify.
  for_each      = local.buckets
  bucket        = each.value
  force_destroy = var.force_destroy
  tags          = var.tags
}

resource "aws_s3_bucket_public_access_block" "this" {
  for_each                = aws_s3_bucket.this
  bucket                  = each.value.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  for_each = aws_s3_bucket.this
  bucket   = each.value.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.kms_key_arn == null ? "AES256" : "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = var.kms_key_arn != null
  }
}

resource "aws_s3_bucket_versioning" "this" {
  for_each = aws_s3_bucket.this
  bucket   = each.value.id
  versioning_configuration {
    status = var.versioning_enabled ? "Enabled" : "Suspended"
  }
}

data "aws_iam_policy_document" "tls_only" {
  for_each = aws_s3_bucket.this
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      each.value.arn,
      "${each.value.arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "tls_only" {
  for_each   = aws_s3_bucket.this
  bucket     = each.value.id
  policy     = data.aws_iam_policy_document.tls_only[each.key].json
  depends_on = [aws_s3_bucket_public_access_block.this]
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  for_each = aws_s3_bucket.this
  bucket   = each.value.id
  rule {
    # bronze: replay copies (the originals stay in place); silver: rejected lines.
    id     = "expire-${local.expiring[each.key].name}"
    status = "Enabled"
    filter {
      prefix = local.expiring[each.key].prefix
    }
    expiration {
      days = local.expiring[each.key].days
    }
  }
  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"
    filter {
      prefix = ""
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}
