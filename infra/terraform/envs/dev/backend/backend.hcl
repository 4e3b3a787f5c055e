# terraform init -backend-config=backend/backend.hcl
bucket       = "CHANGE-ME-terraform-state"
key          = "serverless-elt/dev/terraform.tfstate"
region       = "eu-west-1"
encrypt      = true
use_lockfile = true
