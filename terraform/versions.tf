# Warden's infrastructure. The full root module (buckets, topics, functions, scheduler jobs,
# per-function service accounts, alert policies) is issue #6; this file pins the toolchain.
terraform {
  required_version = ">= 1.6"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 8.0"
    }
  }
}
