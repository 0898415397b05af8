locals {
  services = toset([
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudscheduler.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ])
}

resource "google_project_service" "service" {
  for_each = local.services
  project  = var.project_id
  service  = each.value
  # Other workloads may use these APIs: destroying Warden must not switch them off.
  disable_on_destroy = false
}

# Its number names the Google service agents (Pub/Sub, Monitoring) that get narrow roles.
data "google_project" "this" {
  project_id = var.project_id
}
