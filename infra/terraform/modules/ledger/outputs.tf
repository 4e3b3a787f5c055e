output "table_name" {
  value = aws_dynamodb_table.ledger.name
}

output "table_arn" {
  value = aws_dynamodb_table.ledger.arn
}
