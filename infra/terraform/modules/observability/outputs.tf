output "alarm_names" {
  value = concat(
    [for a in aws_cloudwatch_metric_alarm.dlq_depth : a.alarm_name],
    [for a in aws_cloudwatch_metric_alarm.oldest_message : a.alarm_name],
    aws_cloudwatch_metric_alarm.quarantine_rate[*].alarm_name,
    aws_cloudwatch_metric_alarm.silver_freshness[*].alarm_name,
    [for a in aws_cloudwatch_metric_alarm.lambda : a.alarm_name],
  )
}

output "dashboard_name" {
  value = one(aws_cloudwatch_dashboard.pipeline[*].dashboard_name)
}
