# Optional: the role S3 Batch Operations assumes for `eltops replay copy --engine batch-operations`.
# Least privilege: read the job's manifest, read bronze originals, write copies under bronze/replay/
# only, write the completion report. Manifests and reports live under one prefix of one bucket
# (default: the bronze bucket's batch/, outside bronze/ so ingest never sees them).
# The caller of create_job also needs s3:CreateJob and iam:PassRole on this role (docs/eltops.md).

variable "batch_operations_role_enabled" {
  description = "Create the S3 Batch Operations role for copy replays at scale."
  type        = bool
  default     = false
}

variable "batch_operations_bucket" {
  description = "Bucket holding Batch Operations manifests and completion reports (empty: the bronze bucket)."
  type        = string
  default     = ""
}

variable "batch_operations_prefix" {
  description = "Prefix in that bucket: manifests under <prefix>manifests/, reports under <prefix>reports/."
  type        = string
  default     = "batch/"
  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*/$", var.batch_operations_prefix)) && !startswith(var.batch_operations_prefix, "bronze/")
    error_message = "batch_operations_prefix must be a folder like batch/ (ending in /), outside bronze/."
  }
}

locals {
  batch_ops_bucket_arn = var.batch_operations_bucket == "" ? module.storage.bronze_bucket_arn : "arn:${data.aws_partition.current.partition}:s3:::${var.batch_operations_bucket}"
}

data "aws_iam_policy_document" "batch_operations_assume" {
  count = var.batch_operations_role_enabled ? 1 : 0
  statement {
    sid     = "S3BatchOperationsOfThisAccount"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["batchoperations.s3.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

data "aws_iam_policy_document" "batch_operations" {
  count = var.batch_operations_role_enabled ? 1 : 0
  statement {
    sid       = "ReadTheManifest"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${local.batch_ops_bucket_arn}/${var.batch_operations_prefix}manifests/*"]
  }
  statement {
    sid       = "ReadBronzeOriginals"
    actions   = ["s3:GetObject", "s3:GetObjectTagging"]
    resources = ["${module.storage.bronze_bucket_arn}/bronze/*"]
  }
  statement {
    # Without it a missing original is reported as 403 AccessDenied instead of 404 NoSuchKey.
    sid       = "TellMissingFromForbidden"
    actions   = ["s3:ListBucket"]
    resources = [module.storage.bronze_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["bronze/*"]
    }
  }
  statement {
    sid       = "WriteReplayCopies"
    actions   = ["s3:PutObject", "s3:PutObjectTagging"]
    resources = ["${module.storage.bronze_bucket_arn}/bronze/replay/*"]
  }
  statement {
    sid       = "WriteTheCompletionReport"
    actions   = ["s3:PutObject"]
    resources = ["${local.batch_ops_bucket_arn}/${var.batch_operations_prefix}reports/*"]
  }
}

resource "aws_iam_role" "batch_operations" {
  count                = var.batch_operations_role_enabled ? 1 : 0
  name                 = "${var.iam_name_prefix}${var.name_prefix}-batch-operations"
  assume_role_policy   = data.aws_iam_policy_document.batch_operations_assume[0].json
  permissions_boundary = var.permissions_boundary_arn
  tags                 = local.role_tags
}

resource "aws_iam_role_policy" "batch_operations" {
  count  = var.batch_operations_role_enabled ? 1 : 0
  name   = "replay-copy"
  role   = aws_iam_role.batch_operations[0].id
  policy = data.aws_iam_policy_document.batch_operations[0].json
}

output "batch_operations_role_arn" {
  description = "--role-arn for eltops replay copy --engine batch-operations (null unless batch_operations_role_enabled)"
  value       = var.batch_operations_role_enabled ? aws_iam_role.batch_operations[0].arn : null
}
