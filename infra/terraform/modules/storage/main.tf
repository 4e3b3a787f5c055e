# Bronze and silver buckets: public access blocked, encrypted, TLS-only, versioning per bucket
# (bronze on by default: an overwrite or a delete of raw data can be undone), lifecycle rules for
# quarantine/ (silver), bronze/replay/ copies (bronze) and noncurrent versions, optional server
# access logs for bronze (who read the raw data).

locals {
  buckets = {
    bronze = var.bronze_bucket_name
    silver = var.silver_bucket_name
  }
  expiring = {
    bronze = { name = "replay-copies", prefix = "bronze/replay/", days = var.replay_expiration_days }
    silver = { name = "quarantine", prefix = "quarantine/", days = var.quarantine_expiration_days }
  }
  # "Disabled" means never versioned: no versioning resource at all. "Suspended" is only for a
  # bucket that was versioned once; on it, deleting a key that does not exist adds a delete marker.
  versioning = {
    bronze = var.bronze_versioning
    silver = var.silver_versioning
  }
  versioned = { for k, status in local.versioning : k => status if status != "Disabled" }
}

resource "aws_s3_bucket" "this" {
  #checkov:skip=CKV_AWS_18:Bronze server access logs go to var.access_log_bucket when set (an existing log bucket that S3 logging may write to); silver is derived data.
  #checkov:skip=CKV_AWS_144:Cross-region replication is a disaster-recovery choice per environment, not a pipeline requirement.
  #checkov:skip=CKV_AWS_145:SSE-S3 (AES256) unless var.kms_key_arn (exposed in envs/dev) names a customer-managed key; then SSE-KMS with a bucket key.
  #checkov:skip=CKV_AWS_21:Bronze is versioned by default (var.bronze_versioning); silver is rebuilt from bronze, so its versioning is off unless var.silver_versioning.
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
  for_each = local.versioned
  bucket   = aws_s3_bucket.this[each.key].id
  versioning_configuration {
    status = each.value
  }
}

resource "aws_s3_bucket_logging" "bronze" {
  count         = var.access_log_bucket == null ? 0 : 1
  bucket        = aws_s3_bucket.this["bronze"].id
  target_bucket = var.access_log_bucket
  target_prefix = "${var.access_log_prefix}${aws_s3_bucket.this["bronze"].id}/"
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
  dynamic "rule" {
    # Noncurrent versions and the delete markers left alone once they are gone would otherwise
    # be kept (and paid for) forever.
    for_each = contains(keys(local.versioned), each.key) ? [1] : []
    content {
      id     = "expire-noncurrent-versions"
      status = "Enabled"
      filter {}
      noncurrent_version_expiration {
        noncurrent_days = var.noncurrent_version_expiration_days
      }
      expiration {
        expired_object_delete_marker = true
      }
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
  depends_on = [aws_s3_bucket_versioning.this]
}
