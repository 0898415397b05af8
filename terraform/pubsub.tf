locals {
  # Topic kind => topic id suffix (warden.config.schedules.TOPICS and EVENTS_TOPIC; the prefix is added).
  topics = {
    retrain      = "retrain-requests"
    monitor      = "monitor-requests"
    housekeeping = "housekeeping-requests"
    events       = "model-events"
  }
  dead_letter_topics = { for k, v in local.topics : k => "${v}-dead-letter" }

  # Delivery policy of every trigger subscription: delivery.json (the local stack reads the same
  # file), each field overridable through var.pubsub.
  delivery_defaults = jsondecode(file("${path.module}/delivery.json"))
  delivery = {
    max_delivery_attempts = coalesce(var.pubsub.max_delivery_attempts, local.delivery_defaults.max_delivery_attempts)
    minimum_backoff       = coalesce(var.pubsub.minimum_backoff, local.delivery_defaults.minimum_backoff)
    maximum_backoff       = coalesce(var.pubsub.maximum_backoff, local.delivery_defaults.maximum_backoff)
  }
}

resource "google_pubsub_topic" "topic" {
  # checkov:skip=CKV_GCP_83:Messages are job requests and model events (names, versions, scores), no customer data; Google-managed encryption applies. Add kms_key_name here if your policy requires CMEK.
  for_each                   = local.topics
  project                    = var.project_id
  name                       = "${var.prefix}-${each.value}"
  message_retention_duration = "86400s"
  depends_on                 = [google_project_service.service]
}

# Messages a function kept failing on are parked here (after local.delivery.max_delivery_attempts) for
# an operator: see docs/RUNBOOKS.md#dead-letters.
resource "google_pubsub_topic" "dead_letter" {
  # checkov:skip=CKV_GCP_83:Holds the same job requests and model events as the source topics; Google-managed encryption applies.
  for_each                   = local.dead_letter_topics
  project                    = var.project_id
  name                       = "${var.prefix}-${each.value}"
  message_retention_duration = "604800s"
  depends_on                 = [google_project_service.service]
}

# A dead-letter topic without a subscription drops what it receives: keep it for 7 days.
resource "google_pubsub_subscription" "dead_letter" {
  for_each                   = local.dead_letter_topics
  project                    = var.project_id
  name                       = "${var.prefix}-${each.value}-hold"
  topic                      = google_pubsub_topic.dead_letter[each.key].id
  message_retention_duration = "604800s"
  retain_acked_messages      = true
  ack_deadline_seconds       = 60

  expiration_policy {
    ttl = ""
  }
}

locals {
  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

# Dead-lettering is done by the Pub/Sub service agent: it must publish to the dead-letter topic
# and acknowledge on the source subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = local.dead_letter_topics
  project  = var.project_id
  topic    = google_pubsub_topic.dead_letter[each.key].name
  role     = "roles/pubsub.publisher"
  member   = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each     = { for k, f in local.functions : k => f if f.trigger != null }
  project      = var.project_id
  subscription = module.function[each.key].subscription
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

# With the Pub/Sub notification channel (var.alert_channel = "pubsub"), Cloud Monitoring's
# notification agent publishes incidents to model-events, and to nothing else.
resource "google_pubsub_topic_iam_member" "monitoring_notifications" {
  count   = var.alert_channel == "pubsub" ? 1 : 0
  project = var.project_id
  topic   = google_pubsub_topic.topic["events"].name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-monitoring-notification.iam.gserviceaccount.com"
}
