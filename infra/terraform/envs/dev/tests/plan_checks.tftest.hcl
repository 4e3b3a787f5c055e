# Plan-time checks of envs/dev with a mocked AWS provider: `terraform test -var-file=dev.tfvars
# -var=dist_dir=<folder with the zips>` (tests/e2e/test_terraform_apply.py runs it). Each run that
# expects a failure names the variable whose validation must refuse the value.

mock_provider "aws" {
  mock_data "aws_caller_identity" {
    defaults = {
      account_id = "123456789012"
    }
  }
  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    }
  }
  mock_data "aws_partition" {
    defaults = {
      partition = "aws"
    }
  }
}

variables {
  # A deployment as docs/infrastructure.md asks for: alarms on, and someone they reach (the check
  # block alarms_reach_someone warns on every plan otherwise; in a test a warning fails the run).
  observability_enabled = true
  alarm_actions         = ["arn:aws:sns:eu-west-1:123456789012:elt-oncall"]
}

run "the_check_warns_when_no_alarm_reaches_anyone" {
  command = plan
  variables {
    alarm_actions = []
  }
  expect_failures = [check.alarms_reach_someone]
}

run "bucket_names_carry_account_and_region" {
  command = plan
  assert {
    condition     = output.bronze_bucket == "elt-dev-bronze-123456789012-eu-west-1" && output.silver_bucket == "elt-dev-silver-123456789012-eu-west-1"
    error_message = "bucket names are not <prefix>-<role>-<account>-<region>: ${output.bronze_bucket}, ${output.silver_bucket}"
  }
}

run "bucket_names_can_be_given" {
  command = plan
  variables {
    bronze_bucket_name = "acme-raw-events"
    silver_bucket_name = "acme-silver"
  }
  assert {
    condition     = output.bronze_bucket == "acme-raw-events" && output.silver_bucket == "acme-silver"
    error_message = "given bucket names were not used"
  }
}

run "a_pre_created_queue_without_a_dlq_plans" {
  command = plan
  variables {
    existing_queue_url                        = "https://sqs.eu-west-1.amazonaws.com/123456789012/elt-dev-events"
    existing_queue_arn                        = "arn:aws:sqs:eu-west-1:123456789012:elt-dev-events"
    existing_queue_visibility_timeout_seconds = 1805
  }
  assert {
    condition     = output.dlq_url == null && output.queue_url == "https://sqs.eu-west-1.amazonaws.com/123456789012/elt-dev-events"
    error_message = "the pre-created queue without a DLQ was not passed through"
  }
  expect_failures = [check.events_queue_has_a_dlq] # planned, with a warning that poison has nowhere to go
}

run "a_fifo_events_queue_is_refused" {
  command = plan
  variables {
    existing_dlq_url                          = "https://sqs.eu-west-1.amazonaws.com/123456789012/elt-dev-events-dlq.fifo"
    existing_dlq_arn                          = "arn:aws:sqs:eu-west-1:123456789012:elt-dev-events-dlq.fifo"
    existing_queue_url                        = "https://sqs.eu-west-1.amazonaws.com/123456789012/elt-dev-events.fifo"
    existing_queue_arn                        = "arn:aws:sqs:eu-west-1:123456789012:elt-dev-events.fifo"
    existing_queue_visibility_timeout_seconds = 1805
  }
  expect_failures = [var.existing_queue_arn]
}

run "a_pre_created_queue_with_a_short_visibility_timeout_is_refused" {
  command = plan
  variables {
    existing_dlq_url                          = "https://sqs.eu-west-1.amazonaws.com/123456789012/elt-dev-events-dlq"
    existing_dlq_arn                          = "arn:aws:sqs:eu-west-1:123456789012:elt-dev-events-dlq"
    existing_queue_url                        = "https://sqs.eu-west-1.amazonaws.com/123456789012/elt-dev-events"
    existing_queue_arn                        = "arn:aws:sqs:eu-west-1:123456789012:elt-dev-events"
    existing_queue_visibility_timeout_seconds = 1800 # 6 x 300 s, but the 5 s batching window is not covered
  }
  expect_failures = [var.existing_queue_visibility_timeout_seconds]
}

run "a_pre_created_queue_of_unknown_visibility_timeout_is_refused" {
  command = plan
  variables {
    existing_dlq_url   = "https://sqs.eu-west-1.amazonaws.com/123456789012/elt-dev-events-dlq"
    existing_dlq_arn   = "arn:aws:sqs:eu-west-1:123456789012:elt-dev-events-dlq"
    existing_queue_url = "https://sqs.eu-west-1.amazonaws.com/123456789012/elt-dev-events"
    existing_queue_arn = "arn:aws:sqs:eu-west-1:123456789012:elt-dev-events"
  }
  expect_failures = [var.existing_queue_visibility_timeout_seconds]
}

run "reserved_concurrency_below_the_mapping_maximum_is_refused" {
  command = plan
  variables {
    transform_reserved_concurrency = 10
    transform_max_concurrency      = 20
  }
  expect_failures = [var.transform_reserved_concurrency]
}

run "reserved_concurrency_below_five_is_refused" {
  command = plan
  variables {
    transform_reserved_concurrency = 4
    transform_max_concurrency      = 2
  }
  expect_failures = [var.transform_reserved_concurrency]
}

run "a_mapping_maximum_below_two_is_refused" {
  command = plan
  variables {
    transform_max_concurrency = 1
  }
  expect_failures = [var.transform_max_concurrency]
}

run "a_zero_ingest_reservation_is_refused" {
  command = plan
  variables {
    ingest_reserved_concurrency = 0
  }
  expect_failures = [var.ingest_reserved_concurrency]
}

run "a_layer_of_another_region_is_refused" {
  command = plan
  variables {
    region = "us-east-1"
  }
  expect_failures = [var.aws_sdk_pandas_layer_arn]
}

run "a_layer_for_another_python_is_refused" {
  command = plan
  variables {
    lambda_runtime = "python3.11"
  }
  expect_failures = [var.aws_sdk_pandas_layer_arn]
}

run "replay_copies_must_outlive_the_dlq" {
  command = plan
  variables {
    replay_expiration_days = 7
  }
  expect_failures = [var.replay_expiration_days]
}

run "events_retention_must_stay_below_the_dlq" {
  command = plan
  variables {
    events_retention_seconds = 1209600
  }
  expect_failures = [var.events_retention_seconds]
}

run "objects_larger_than_lambda_tmp_can_hold_are_refused" {
  command = plan
  variables {
    max_object_bytes = 11811160064 # 11 GiB
  }
  expect_failures = [var.max_object_bytes]
}

run "a_name_prefix_that_cannot_fit_a_bucket_name_is_refused" {
  command = plan
  variables {
    name_prefix = "an-environment-name-that-is-far-too-long"
  }
  expect_failures = [var.name_prefix]
}

run "versioning_takes_only_the_three_states" {
  command = plan
  variables {
    bronze_versioning = "Off"
  }
  expect_failures = [var.bronze_versioning]
}

run "a_pre_created_ingest_queue_with_a_short_visibility_timeout_is_refused" {
  command = plan
  variables {
    existing_ingest_queue_url                        = "https://sqs.eu-west-1.amazonaws.com/123456789012/elt-dev-ingest-events"
    existing_ingest_queue_arn                        = "arn:aws:sqs:eu-west-1:123456789012:elt-dev-ingest-events"
    existing_ingest_dlq_url                          = "https://sqs.eu-west-1.amazonaws.com/123456789012/elt-dev-ingest-events-dlq"
    existing_ingest_dlq_arn                          = "arn:aws:sqs:eu-west-1:123456789012:elt-dev-ingest-events-dlq"
    existing_ingest_queue_visibility_timeout_seconds = 30 # SQS's default, below 6 x 30 s
  }
  expect_failures = [var.existing_ingest_queue_visibility_timeout_seconds]
}
