variable "project_id" {
  description = "Google Cloud project that hosts Warden."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project id (6-30 lowercase letters, digits, hyphens)."
  }
}

variable "region" {
  description = "Region of the functions, the Scheduler jobs and the buckets."
  type        = string
  default     = "europe-west1"
  nullable    = false

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region must be a Cloud region such as europe-west1."
  }
}

variable "prefix" {
  description = <<-EOT
    Prefix of every resource name. Bucket names are global, so pick one that is unique to your
    organisation and environment (e.g. acme-wdn-prd); service account ids limit it to 11 characters.
  EOT
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,9}[a-z0-9]$", var.prefix))
    error_message = "prefix must be 3-11 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "config_file" {
  description = "Path of warden.yaml, relative to this module (the same file the functions ship)."
  type        = string
  default     = "../warden.yaml"
  nullable    = false
}

variable "bundle_dir" {
  description = "Directory where `python -m warden_local.bundle` wrote NAME.zip for every function."
  type        = string
  default     = "../build"
  nullable    = false
}

variable "data_bucket" {
  description = "Bucket with the training data; null creates PREFIX-data."
  type        = string
  default     = null

  validation {
    condition     = var.data_bucket == null || can(regex("^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", var.data_bucket))
    error_message = "data_bucket must be a bucket name."
  }
}

variable "buckets" {
  description = "Location and retention of Warden's buckets."
  type = object({
    location                  = optional(string, "EU")
    noncurrent_retention_days = optional(number, 30) # overwritten/deleted object generations
    bundle_retention_days     = optional(number, 90) # function bundles (a deployed one is re-uploaded)
    force_destroy             = optional(bool, false)
  })
  default  = {}
  nullable = false

  validation {
    condition = alltrue([
      for d in [var.buckets.noncurrent_retention_days, var.buckets.bundle_retention_days] :
      d >= 1 && d <= 3650
    ])
    error_message = "Retention days must be between 1 and 3650."
  }
}

variable "functions" {
  description = "Per-function overrides of memory, CPU, timeout, instance limits and request concurrency, by function key."
  type = map(object({
    memory          = optional(string)
    cpu             = optional(string)
    timeout_seconds = optional(number)
    max_instances   = optional(number)
    concurrency     = optional(number) # requests per instance; THREADS follows it
  }))
  default  = {}
  nullable = false

  validation {
    condition = alltrue([
      for k in keys(var.functions) :
      contains(["retrain_model", "monitor_model", "housekeeping", "health", "route_alerts", "route_alert_events"], k)
    ])
    error_message = "functions keys must be retrain_model, monitor_model, housekeeping, health, route_alerts or route_alert_events."
  }

  # Conditionals, not || (see var.pubsub). Cloud Run serves more than one request at a time only
  # with at least one vCPU: a cpu override below 1 must come with concurrency = 1.
  validation {
    condition = alltrue([
      for k, v in var.functions : v.concurrency == null ? true : v.concurrency >= 1 && v.concurrency <= 1000
    ])
    error_message = "functions[*].concurrency must be between 1 and 1000 (Cloud Run's limits)."
  }
  validation {
    condition = alltrue([
      for k, v in var.functions : v.cpu == null ? true : (
        !can(tonumber(v.cpu)) ? true : (tonumber(v.cpu) >= 1 ? true : v.concurrency == 1)
      )
    ])
    error_message = "functions[*] with cpu below 1 must set concurrency = 1 (Cloud Run needs a whole vCPU to serve requests concurrently)."
  }
}

variable "pubsub" {
  description = <<-EOT
    Per-field overrides of the delivery policy of the push subscriptions that trigger the event
    functions. A field left null takes its value from delivery.json, which the local stack reads too.
  EOT
  type = object({
    max_delivery_attempts = optional(number)
    minimum_backoff       = optional(string)
    maximum_backoff       = optional(string)
  })
  default  = {}
  nullable = false

  # Conditionals, not ||: Terraform < 1.12 evaluates both sides of || and null >= 5 is an error.
  validation {
    condition = (var.pubsub.max_delivery_attempts == null ? true :
    var.pubsub.max_delivery_attempts >= 5 && var.pubsub.max_delivery_attempts <= 100)
    error_message = "max_delivery_attempts must be between 5 and 100."
  }

  validation {
    condition = alltrue([
      for d in [var.pubsub.minimum_backoff, var.pubsub.maximum_backoff] :
      d == null ? true : can(regex("^[0-9]+(\\.[0-9]{1,9})?s$", d))
    ])
    error_message = "minimum_backoff and maximum_backoff must be durations in seconds, such as \"10s\"."
  }
}

variable "scheduler_paused" {
  description = "Create the Scheduler jobs paused (e.g. in a staging project)."
  type        = bool
  default     = false
  nullable    = false
}

variable "alert_notification_channels" {
  description = "Extra notification channel ids (email, PagerDuty...) every Warden alert policy also notifies."
  type        = list(string)
  default     = []
  nullable    = false
}

variable "runbook_base_url" {
  description = "Base URL that the runbook paths in warden.yaml are appended to (alert documentation)."
  type        = string
  default     = "https://github.com/warden-ml/warden/blob/main"
  nullable    = false

  validation {
    condition     = can(regex("^https://", var.runbook_base_url))
    error_message = "runbook_base_url must be an https:// URL."
  }
}

variable "error_rate_threshold" {
  description = "5xx responses per second, per function, above which the error-rate policy fires."
  type        = number
  default     = 0.01
  nullable    = false

  validation {
    condition     = var.error_rate_threshold > 0
    error_message = "error_rate_threshold must be positive."
  }
}

variable "staleness_hours" {
  description = "No monitor run/success point for this long (per model) fires the staleness policy (at most 23.5, Cloud Monitoring's limit)."
  type        = number
  default     = 23.5
  nullable    = false

  validation {
    condition     = var.staleness_hours >= 1 && var.staleness_hours <= 23.5
    error_message = "staleness_hours must be between 1 and 23.5."
  }
}

variable "log_level" {
  description = "WARDEN_LOG_LEVEL of every function."
  type        = string
  default     = "INFO"
  nullable    = false

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

variable "labels" {
  description = "Labels added to every resource that takes labels."
  type        = map(string)
  default     = {}
  nullable    = false
}

variable "alert_channel" {
  description = "How Cloud Monitoring reaches the alert router: \"webhook\" (route_alerts over HTTPS, public ingress, token-checked) or \"pubsub\" (a Pub/Sub notification channel on the model-events topic, read by route_alert_events; route_alerts then runs internal-only)."
  type        = string
  default     = "webhook"
  nullable    = false

  validation {
    condition     = contains(["webhook", "pubsub"], var.alert_channel)
    error_message = "alert_channel must be \"webhook\" or \"pubsub\"."
  }
}

variable "job_image" {
  description = <<-EOT
    Image of the Cloud Run jobs (Dockerfile), as cloudbuild.yaml's job-image step pushed it:
    REGION-docker.pkg.dev/PROJECT/PREFIX-jobs/warden-jobs@sha256:DIGEST (or :TAG). null deploys
    no job, and the functions get empty WARDEN_RETRAIN_JOB/WARDEN_MONITOR_JOB: the first deploy,
    which creates the repository the next build pushes to.
  EOT
  type        = string
  default     = null

  validation {
    condition = var.job_image == null ? true : (
      can(regex("^[a-z0-9][a-z0-9.-]*(:[0-9]+)?(/[a-z0-9][a-z0-9._-]*)+(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?$", var.job_image))
      && can(regex("(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})$", var.job_image))
      && !endswith(var.job_image, ":latest")
    )
    error_message = "job_image must be a full image reference ending in a digest (@sha256:...) or a tag other than latest, e.g. europe-west1-docker.pkg.dev/PROJECT/PREFIX-jobs/warden-jobs@sha256:...."
  }
}

variable "jobs" {
  description = <<-EOT
    Per-job overrides of the Cloud Run jobs' size and limits, by job ("retrain", "monitor"). Defaults
    (jobs.tf, local.job_defaults): retrain 4 CPU / 16Gi, monitor 2 CPU / 4Gi; both a 3600 s task
    timeout and 2 retries per task.
  EOT
  type = map(object({
    cpu             = optional(string) # "1", "2", "4", "6" or "8"
    memory          = optional(string) # e.g. "16Gi"
    timeout_seconds = optional(number) # per task attempt; not above warden.yaml's runners timeout_s
    max_retries     = optional(number) # per failed task
  }))
  default  = {}
  nullable = false

  validation {
    condition     = alltrue([for k in keys(var.jobs) : contains(["retrain", "monitor"], k)])
    error_message = "jobs keys must be retrain or monitor."
  }

  # Conditionals, not || (see var.pubsub).
  validation {
    condition = alltrue([
      for k, v in var.jobs : v.cpu == null ? true : contains(["1", "2", "4", "6", "8"], v.cpu)
    ])
    error_message = "jobs[*].cpu must be \"1\", \"2\", \"4\", \"6\" or \"8\" (Cloud Run jobs' CPU limits)."
  }
  validation {
    condition = alltrue([
      for k, v in var.jobs : v.memory == null ? true : can(regex("^[1-9][0-9]*(Mi|Gi)$", v.memory))
    ])
    error_message = "jobs[*].memory must be a size in Mi or Gi, such as \"512Mi\" or \"16Gi\"."
  }
  validation {
    condition = alltrue([
      for k, v in var.jobs : v.timeout_seconds == null ? true : v.timeout_seconds >= 60 && v.timeout_seconds <= 604800
    ])
    error_message = "jobs[*].timeout_seconds must be between 60 and 604800 (7 days, Cloud Run's limit and warden.yaml's runners timeout_s)."
  }
  validation {
    condition = alltrue([
      for k, v in var.jobs : v.max_retries == null ? true : v.max_retries >= 0 && v.max_retries <= 10
    ])
    error_message = "jobs[*].max_retries must be between 0 and 10."
  }
}
