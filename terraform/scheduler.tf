# One Cloud Scheduler job per model and job kind in warden.yaml (plus the alert-flush tick), with
# the payload the functions parse (warden.config.schedules.JobSpec: the test suite holds the two together).
resource "google_cloud_scheduler_job" "job" {
  for_each    = module.config.scheduler_jobs
  project     = var.project_id
  region      = var.region
  name        = "${var.prefix}-${each.key}"
  description = "Warden ${each.value.kind} of ${each.value.model}"
  schedule    = each.value.cron
  time_zone   = each.value.timezone
  paused      = var.scheduler_paused

  pubsub_target {
    topic_name = google_pubsub_topic.topic[each.value.topic].id
    data       = base64encode(each.value.data)
    attributes = each.value.attributes
  }

  retry_config {
    retry_count          = 3
    min_backoff_duration = "30s"
    max_backoff_duration = "600s"
  }

  lifecycle {
    precondition {
      condition     = contains(keys(local.topics), each.value.topic)
      error_message = "Job ${each.key}: no topic for kind ${each.value.kind} is deployed."
    }
  }

  depends_on = [google_project_service.service]
}
