# terraform init -backend-config=backend/backend.hcl
# bucket: an existing, versioned state bucket of yours (the name below is a valid placeholder).
# use_lockfile (S3-native locking, no DynamoDB table) needs Terraform >= 1.10: main.tf requires it.
bucket       = "change-me-tfstate-123456789012-eu-west-1"
key          = "serverless-elt/dev/terraform.tfstate"
region       = "eu-west-1"
encrypt      = true
use_lockfile = true
