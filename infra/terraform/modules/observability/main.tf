# Alarms on both DLQs' depth, both queues' oldest message age, Lambda errors and throttles, the
# quarantine rate and silver freshness (from the Lambdas' EMF metrics, lambdas/shared/metrics.py),
# and a dashboard.
# Off unless enabled (observability_enabled = false by default in the environments).

locals {
  count = var.enabled ? 1 : 0
  functions = {
    ingest    = var.ingest_function_name
    transform = var.transform_function_name
  }
  dlq_alarms = {
    "dlq-not-empty" = {
      queue       = var.dlq_name
      description = "Work units transform could not process wait in the events DLQ: see runbooks/dlq-triage-and-redrive.md"
    }
    "ingest-dlq-not-empty" = {
      queue       = var.ingest_dlq_name
      description = "S3 events ingest could not finish after all retries wait in the ingest DLQ (objects not yet in the ledger or silver): see runbooks/ingest-dlq.md"
    }
  }
  backlog_alarms = {
    "events-backlog-old" = {
      queue       = var.queue_name
      description = "The oldest work unit waits too long: transform is failing or throttled. See runbooks/alarms.md"
    }
    "ingest-backlog-old" = {
      queue       = var.ingest_queue_name
      description = "The oldest S3 event waits too long for ingest: ingest is failing or throttled. See runbooks/ingest-dlq.md"
    }
  }
  lambda_alarms = {
    for pair in setproduct(keys(local.functions), ["Errors", "Throttles"]) :
    "${pair[0]}-${lower(pair[1])}" => { function = pair[0], metric = pair[1] }
  }
}

# One alarm per DLQ (anything in it) and per queue (its oldest message too old).
resource "aws_cloudwatch_metric_alarm" "dlq_depth" {
  # A pre-created events queue may have no DLQ (provision --without-dlq): then no alarm for it.
  for_each            = var.enabled ? { for k, v in local.dlq_alarms : k => v if k != "dlq-not-empty" || var.dlq_enabled } : {}
  alarm_name          = "${var.name_prefix}-${each.key}"
  alarm_description   = each.value.description
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = each.value.queue }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "oldest_message" {
  for_each            = var.enabled ? local.backlog_alarms : {}
  alarm_name          = "${var.name_prefix}-${each.key}"
  alarm_description   = each.value.description
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = each.value.queue }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 2
  threshold           = var.oldest_message_age_seconds
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
}

# Errors and Throttles of both functions: one alarm per (function, metric).
resource "aws_cloudwatch_metric_alarm" "lambda" {
  for_each            = var.enabled ? local.lambda_alarms : {}
  alarm_name          = "${var.name_prefix}-${each.value.function}-${lower(each.value.metric)}"
  alarm_description   = "The ${each.value.function} Lambda reports ${each.value.metric}. See runbooks/alarms.md"
  namespace           = "AWS/Lambda"
  metric_name         = each.value.metric
  dimensions          = { FunctionName = local.functions[each.value.function] }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
}

# From the transform's EMF metrics (namespace ServerlessElt, dimension function): share of the
# lines transformed in a period that went to quarantine.
resource "aws_cloudwatch_metric_alarm" "quarantine_rate" {
  count               = local.count
  alarm_name          = "${var.name_prefix}-quarantine-rate-high"
  alarm_description   = "More than ${var.quarantine_rate_threshold * 100}% of transformed lines went to quarantine. See runbooks/transform-poison-data.md"
  comparison_operator = "GreaterThanThreshold"
  evaluation_periods  = 1
  threshold           = var.quarantine_rate_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions

  metric_query {
    id          = "rate"
    expression  = "IF(written + quarantined > 0, quarantined / (written + quarantined), 0)"
    label       = "quarantine rate"
    return_data = true
  }
  dynamic "metric_query" {
    for_each = { written = "RowsWritten", quarantined = "RowsQuarantined" }
    content {
      id = metric_query.key
      metric {
        namespace   = "ServerlessElt"
        metric_name = metric_query.value
        dimensions  = { function = var.transform_function_name }
        stat        = "Sum"
        period      = 900
      }
    }
  }
}

# No object written to silver for silver_freshness_seconds (missing data counts: nothing arrives).
resource "aws_cloudwatch_metric_alarm" "silver_freshness" {
  count               = local.count
  alarm_name          = "${var.name_prefix}-silver-not-fresh"
  alarm_description   = "No object written to silver for ${var.silver_freshness_seconds} s. See runbooks/pipeline-health.md#silver-freshness"
  namespace           = "ServerlessElt"
  metric_name         = "Objects"
  dimensions          = { function = var.transform_function_name }
  statistic           = "Sum"
  period              = 3600
  evaluation_periods  = max(1, ceil(var.silver_freshness_seconds / 3600))
  threshold           = 0
  comparison_operator = "LessThanOrEqualToThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
}

resource "aws_cloudwatch_dashboard" "pipeline" {
  count          = local.count
  dashboard_name = "${var.name_prefix}-pipeline"
  dashboard_body = jsonencode({
    widgets = [
      {
        type = "metric", x = 0, y = 0, width = 12, height = 6
        properties = {
          title  = "Queues"
          region = var.region
          metrics = [
            for metric in [
              ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", var.queue_name],
              ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", var.dlq_name],
              ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", var.ingest_queue_name],
              ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", var.ingest_dlq_name],
              ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", var.queue_name, { yAxis = "right" }],
            ] : metric if var.dlq_enabled || metric[3] != var.dlq_name
          ]
        }
      },
      {
        type = "metric", x = 12, y = 0, width = 12, height = 6
        properties = {
          title  = "Lambda"
          region = var.region
          metrics = [for pair in setproduct(["Invocations", "Errors", "Throttles"], values(local.functions)) :
          ["AWS/Lambda", pair[0], "FunctionName", pair[1]]]
        }
      },
    ]
  })
}
