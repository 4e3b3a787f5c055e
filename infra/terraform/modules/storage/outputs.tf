output "bronze_bucket" {
  value = aws_s3_bucket.this["bronze"].bucket
}

output "bronze_bucket_arn" {
  value = aws_s3_bucket.this["bronze"].arn
}

output "bronze_bucket_id" {
  value = aws_s3_bucket.this["bronze"].id
}

output "silver_bucket" {
  value = aws_s3_bucket.this["silver"].bucket
}

output "silver_bucket_arn" {
  value = aws_s3_bucket.this["silver"].arn
}
