output "name" {
  description = "Full function name."
  value       = google_cloudfunctions2_function.function.name
}

output "uri" {
  description = "HTTPS endpoint of the function's service."
  value       = google_cloudfunctions2_function.function.service_config[0].uri
}

output "bundle_object" {
  description = "Content-hashed object name of the deployed bundle."
  value       = google_storage_bucket_object.bundle.name
}

output "subscription" {
  description = "Push subscription that triggers the function, if any."
  value       = try(google_pubsub_subscription.trigger[0].name, null)
}
