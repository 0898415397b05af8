# One service account per function, and only the roles its code needs, each on the exact bucket,
# topic or secret (tests/test_terraform.py holds this table to what the code does). No project-wide
# role except roles/monitoring.metricWriter, which Cloud Monitoring only grants per project.

locals {
  access = {
    retrain_model = {
      # versions, aliases (CAS), run ledger; training data read-only
      buckets       = { registry = "roles/storage.objectUser", data = "roles/storage.objectViewer" }
      topics        = ["events"] # version_registered / promoted / rejected / failed
      project_roles = ["roles/monitoring.metricWriter"]
    }
    monitor_model = {
      buckets       = { registry = "roles/storage.objectUser", data = "roles/storage.objectViewer" }
      topics        = ["events", "retrain"] # drift events; retrain requests on drift/degradation
      project_roles = ["roles/monitoring.metricWriter"]
    }
    housekeeping = {
      # retention deletes versions, expiry deletes markers and router state; snapshots go to backup
      buckets       = { registry = "roles/storage.objectUser", backup = "roles/storage.objectUser" }
      topics        = ["events"] # integrity_failed
      project_roles = ["roles/monitoring.metricWriter"]
    }
    health = {
      buckets       = { registry = "roles/storage.objectViewer" } # reads manifests and artifacts
      topics        = []
      project_roles = []
    }
    route_alerts = {
      buckets       = { registry = "roles/storage.objectUser" } # alert state under _alerting/ (CAS)
      topics        = []
      project_roles = []
    }
    route_alert_events = {
      buckets       = { registry = "roles/storage.objectUser" }
      topics        = []
      project_roles = []
    }
  }

  bucket_names = {
    registry = google_storage_bucket.bucket["registry"].name
    backup   = google_storage_bucket.bucket["backup"].name
    data     = local.data_bucket
  }

  bucket_grants = merge([
    for fn, a in local.access : {
      for bucket, role in a.buckets : "${fn}/${bucket}" => { fn = fn, bucket = bucket, role = role }
    }
  ]...)

  topic_grants = merge([
    for fn, a in local.access : {
      for topic in a.topics : "${fn}/${topic}" => { fn = fn, topic = topic }
    }
  ]...)

  # Pub/Sub receivers in warden.yaml publish to topics named there (both router functions send).
  receiver_topic_grants = merge([
    for fn in ["route_alerts", "route_alert_events"] : {
      for topic in module.config.receiver_topics : "${fn}/${topic}" => { fn = fn, topic = topic }
    }
  ]...)

  project_grants = merge([
    for fn, a in local.access : {
      for role in a.project_roles : "${fn}/${role}" => { fn = fn, role = role }
    }
  ]...)

  function_invokers = {
    # Cloud Monitoring webhooks carry no Google identity: the function checks its token itself.
    # With the Pub/Sub channel nothing outside needs to call it.
    route_alerts = var.alert_channel == "webhook" ? { public = "allUsers" } : {}
    # Uptime checks authenticate as the Monitoring service agent (OIDC).
    health = {
      uptime-check = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-monitoring-notification.iam.gserviceaccount.com"
    }
  }
}

resource "google_service_account" "function" {
  for_each     = local.functions
  project      = var.project_id
  account_id   = "${var.prefix}-${each.value.name}"
  display_name = "Warden ${each.value.name}"
  description  = "Runtime identity of the ${each.value.name} function."
  depends_on   = [google_project_service.service]
}

# Pub/Sub push subscriptions authenticate to the event functions as this account; it can do
# nothing but invoke them.
resource "google_service_account" "pubsub_invoker" {
  project      = var.project_id
  account_id   = "${var.prefix}-pubsub-push"
  display_name = "Warden Pub/Sub push"
  description  = "Identity of the push subscriptions that trigger Warden's event functions."
  depends_on   = [google_project_service.service]
}

# The Pub/Sub service agent mints the push OIDC tokens of that account.
resource "google_service_account_iam_member" "pubsub_token_creator" {
  service_account_id = google_service_account.pubsub_invoker.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

resource "google_storage_bucket_iam_member" "function" {
  for_each = local.bucket_grants
  bucket   = local.bucket_names[each.value.bucket]
  role     = each.value.role
  member   = "serviceAccount:${google_service_account.function[each.value.fn].email}"
}

resource "google_pubsub_topic_iam_member" "function" {
  for_each = local.topic_grants
  project  = var.project_id
  topic    = google_pubsub_topic.topic[each.value.topic].name
  role     = "roles/pubsub.publisher"
  member   = "serviceAccount:${google_service_account.function[each.value.fn].email}"
}

resource "google_pubsub_topic_iam_member" "receiver" {
  for_each = local.receiver_topic_grants
  project  = var.project_id
  topic    = each.value.topic
  role     = "roles/pubsub.publisher"
  member   = "serviceAccount:${google_service_account.function[each.value.fn].email}"
}

resource "google_project_iam_member" "function" {
  for_each = local.project_grants
  project  = var.project_id
  role     = each.value.role
  member   = "serviceAccount:${google_service_account.function[each.value.fn].email}"
}
