output "models" {
  description = "Model names declared in warden.yaml."
  value       = sort(keys(local.models))
}

output "scheduler_jobs" {
  description = "Job id (without prefix) => model, kind, topic kind, cron, time zone, JSON data, attributes."
  value       = merge(local.model_jobs, local.flush_job)
}

output "alert_policies" {
  description = "Threshold policies on Warden's custom metrics, by name, with defaults filled in."
  value       = local.alert_policies
}

output "serving_policies" {
  description = "Latency and error-rate policies on the serving Cloud Run services, by name (SERVICE-latency, SERVICE-errors): kind, service, threshold (p95 ms or 5xx share), duration_s, severity, runbook."
  value       = local.serving_policies
}

output "alerting_enabled" {
  description = "Whether warden.yaml configures alert routing."
  value       = local.alerting_enabled
}

output "receiver_secret_envs" {
  description = "Environment variables the alert receivers read their URL or HMAC key from."
  value       = local.receiver_secret_envs
}

output "receiver_topics" {
  description = "Pub/Sub topic ids that alert receivers publish to."
  value       = local.receiver_topics
}
