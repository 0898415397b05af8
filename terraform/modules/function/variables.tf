variable "project_id" {
  description = "Project that hosts the function."
  type        = string
  nullable    = false
}

variable "region" {
  description = "Region of the function (and of its Cloud Run service)."
  type        = string
  nullable    = false
}

variable "prefix" {
  description = "Prefix of every resource name (see the root module)."
  type        = string
  nullable    = false
}

variable "name" {
  description = "Function name without prefix, lowercase with hyphens (e.g. retrain-model)."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,38}[a-z0-9]$", var.name))
    error_message = "name must be lowercase letters, digits and hyphens, at most 40 characters."
  }
}

variable "description" {
  description = "What the function does."
  type        = string
  default     = ""
}

variable "service_account_email" {
  description = "Runtime identity of the function: its own account, with roles on exact resources."
  type        = string
  nullable    = false
}

variable "bundle" {
  description = "The zip built by `python -m warden_local.bundle` and the bucket that holds bundles."
  type = object({
    bucket = string
    path   = string # local path of build/NAME.zip
  })
  nullable = false
}

variable "entry_point" {
  description = "Python function in main.py that functions-framework serves."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_]*$", var.entry_point))
    error_message = "entry_point must be a Python identifier."
  }
}

variable "runtime" {
  description = "Cloud Functions runtime."
  type        = string
  default     = "python311"

  validation {
    condition     = can(regex("^python3[0-9]+$", var.runtime))
    error_message = "runtime must be a Python runtime (python311, python312, ...)."
  }
}

variable "service" {
  description = "Sizing and exposure of the function's Cloud Run service."
  type = object({
    memory          = optional(string, "512Mi")
    cpu             = optional(string, "1")
    timeout_seconds = optional(number, 60)
    max_instances   = optional(number, 3)
    concurrency     = optional(number, 1)
    ingress         = optional(string, "ALLOW_INTERNAL_ONLY")
  })
  default  = {}
  nullable = false

  validation {
    condition     = var.service.timeout_seconds >= 1 && var.service.timeout_seconds <= 540
    error_message = "timeout_seconds must be between 1 and 540 (the Pub/Sub ack deadline follows it)."
  }
  validation {
    condition = contains(
      ["ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], var.service.ingress
    )
    error_message = "ingress must be ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
  validation {
    condition     = var.service.max_instances >= 1 && var.service.concurrency >= 1
    error_message = "max_instances and concurrency must be at least 1."
  }
}

variable "environment" {
  description = "Plain environment variables (names must be ones warden.settings reads)."
  type        = map(string)
  default     = {}
  nullable    = false
}

variable "secrets" {
  description = "Environment variable => Secret Manager secret id (latest version), for secrets."
  type        = map(string)
  default     = {}
  nullable    = false
}

variable "pubsub_trigger" {
  description = <<-EOT
    Push subscription that delivers a topic to this function (null for HTTP functions). Pushes
    carry an OIDC token of invoker_service_account; failures are retried with exponential
    backoff and, after max_delivery_attempts, parked in dead_letter_topic.
  EOT
  type = object({
    topic                   = string # topic id
    dead_letter_topic       = string # topic id
    invoker_service_account = string # email
    max_delivery_attempts   = optional(number, 5)
    minimum_backoff         = optional(string, "10s")
    maximum_backoff         = optional(string, "600s")
    filter                  = optional(string, "")
  })
  default = null

  validation {
    condition = var.pubsub_trigger == null || (
      try(var.pubsub_trigger.max_delivery_attempts >= 5 && var.pubsub_trigger.max_delivery_attempts <= 100, false)
    )
    error_message = "max_delivery_attempts must be between 5 and 100 (Pub/Sub's limits)."
  }
}

variable "invokers" {
  description = "Members allowed to invoke the function's service (roles/run.invoker), by a static key."
  type        = map(string)
  default     = {}
  nullable    = false
}

variable "labels" {
  description = "Labels on the function."
  type        = map(string)
  default     = {}
  nullable    = false
}
