output "functions" {
  description = "Function name => HTTPS endpoint."
  value       = { for k, m in module.function : k => m.uri }
}

output "buckets" {
  description = "Warden's buckets by role."
  value       = merge({ for k, b in google_storage_bucket.bucket : k => b.name }, { data = local.data_bucket })
}

output "topics" {
  description = "Topic ids by kind."
  value       = { for k, t in google_pubsub_topic.topic : k => t.name }
}

output "scheduler_jobs" {
  description = "Scheduler job ids (what `warden jobs run|pause|resume` takes)."
  value       = sort([for j in google_cloud_scheduler_job.job : j.name])
}

output "job_image_repository" {
  description = "Where cloudbuild.yaml pushes the Cloud Run jobs' image: REPOSITORY/warden-jobs:<commit>."
  value       = local.job_repository
}

output "jobs" {
  description = "Cloud Run jobs of the job runner (full names) by job; empty until an image is deployed (var.job_image)."
  value       = { for job, j in google_cloud_run_v2_job.job : job => j.id }
}

output "cli_env" {
  description = "Shell exports that point the warden CLI at this deployment: eval \"$(terraform output -raw cli_env)\"."
  value = join("\n", [for k, v in {
    WARDEN_PROJECT         = var.project_id
    WARDEN_LOCATION        = var.region
    WARDEN_REGISTRY_BUCKET = google_storage_bucket.bucket["registry"].name
    WARDEN_ALERT_BUCKET    = google_storage_bucket.bucket["alerts"].name # `warden silence`
    WARDEN_DATA_BUCKET     = local.data_bucket
    WARDEN_BACKUP_BUCKET   = google_storage_bucket.bucket["backup"].name
    WARDEN_EVENTS_TOPIC    = google_pubsub_topic.topic["events"].name
    WARDEN_RETRAIN_TOPIC   = google_pubsub_topic.topic["retrain"].name
    # No WARDEN_CONFIG: an absolute path from the build machine means nothing on yours; the CLI
    # reads ./warden.yaml from the checkout you run it in.
  } : "export ${k}=${v}"])
}

output "webhook_token_secret" {
  description = "Secret Manager secret holding the router's webhook token."
  value       = google_secret_manager_secret.webhook_token.secret_id
}
