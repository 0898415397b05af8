# One Cloud Function (2nd gen) running as the service account it is given, its bundle uploaded under a
# content-hashed name (a code change is a new object, hence a redeploy), and optionally the
# Pub/Sub push subscription that triggers it.

locals {
  full_name   = "${var.prefix}-${var.name}"
  bundle_hash = filesha256(var.bundle.path)
}

resource "google_storage_bucket_object" "bundle" {
  bucket = var.bundle.bucket
  # The content hash in the name is what makes Terraform redeploy changed code.
  name         = "bundles/${var.name}-${substr(local.bundle_hash, 0, 16)}.zip"
  source       = var.bundle.path
  content_type = "application/zip"
}

resource "google_cloudfunctions2_function" "function" {
  # checkov:skip=CKV_GCP_124:Ingress is per function (var.service.ingress, default internal-only); only route_alerts (Cloud Monitoring webhooks, token-checked) and health (uptime checks, OIDC) take ALLOW_ALL, because those callers come from outside the VPC.
  project     = var.project_id
  location    = var.region
  name        = local.full_name
  description = var.description
  labels      = var.labels

  build_config {
    runtime     = var.runtime
    entry_point = var.entry_point
    source {
      storage_source {
        bucket = google_storage_bucket_object.bundle.bucket
        object = google_storage_bucket_object.bundle.name
      }
    }
  }

  service_config {
    available_memory                 = var.service.memory
    available_cpu                    = var.service.cpu
    timeout_seconds                  = var.service.timeout_seconds
    max_instance_count               = var.service.max_instances
    min_instance_count               = 0
    max_instance_request_concurrency = var.service.concurrency
    ingress_settings                 = var.service.ingress
    all_traffic_on_latest_revision   = true
    service_account_email            = var.service_account_email
    environment_variables = merge(var.environment, {
      WARDEN_CODE_VERSION = substr(local.bundle_hash, 0, 12)
    })

    dynamic "secret_environment_variables" {
      for_each = var.secrets
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = secret_environment_variables.value
        version    = "latest"
      }
    }
  }
}

# Gen2 functions are Cloud Run services: invocation is roles/run.invoker on the service.
resource "google_cloud_run_v2_service_iam_member" "invoker" {
  # Static keys: member values (service account emails) are unknown until the first apply.
  for_each = merge(var.invokers, var.pubsub_trigger == null ? {} : {
    pubsub-push = "serviceAccount:${var.pubsub_trigger.invoker_service_account}"
  })
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.function.name
  role     = "roles/run.invoker"
  member   = each.value
}

# A push subscription we own (rather than the one an Eventarc trigger creates and hides) so that
# retry backoff and the dead-letter topic are explicit and reviewed. functions-framework turns the
# push body into the same CloudEvent an Eventarc trigger would deliver. The root module passes the
# delivery policy of terraform/delivery.json (overridable by var.pubsub); the local stack creates
# the same subscription from the same file (warden_local.pubsub.wire_trigger).
resource "google_pubsub_subscription" "trigger" {
  count   = var.pubsub_trigger == null ? 0 : 1
  project = var.project_id
  name    = "${local.full_name}-push"
  topic   = var.pubsub_trigger.topic
  filter  = var.pubsub_trigger.filter
  labels  = var.labels

  # The function may run up to its timeout before it answers; Pub/Sub caps the deadline at 600 s.
  ack_deadline_seconds       = min(600, var.service.timeout_seconds + 30)
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = google_cloudfunctions2_function.function.service_config[0].uri
    oidc_token {
      service_account_email = var.pubsub_trigger.invoker_service_account
      audience              = google_cloudfunctions2_function.function.service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = var.pubsub_trigger.minimum_backoff
    maximum_backoff = var.pubsub_trigger.maximum_backoff
  }

  dead_letter_policy {
    dead_letter_topic     = "projects/${var.project_id}/topics/${var.pubsub_trigger.dead_letter_topic}"
    max_delivery_attempts = var.pubsub_trigger.max_delivery_attempts
  }

  expiration_policy {
    ttl = "" # never expire for inactivity: weekly schedules are normal
  }

  depends_on = [google_cloud_run_v2_service_iam_member.invoker]
}
