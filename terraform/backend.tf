# State lives in a bucket created once by hand (README, "Deploy"); its name is given at init:
#   terraform init -backend-config="bucket=STATE_BUCKET" -backend-config="prefix=warden/PREFIX"
terraform {
  backend "gcs" {}
}
