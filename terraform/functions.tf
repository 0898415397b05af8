locals {
  # Every entry point in functions/*/main.py, its trigger and its sizing (the test suite checks
  # this table against the decorators in the code and against the local stack's FUNCTIONS).
  # concurrency: requests one instance serves at once. The model functions take 1 (one model run
  # uses the whole instance; DESIGN.md, "Scale"); the router's work is waiting on Cloud Storage,
  # so it takes 16 on its one vCPU (docs/decisions.md, "Router concurrency"). Cloud Run allows
  # concurrency > 1 only with cpu >= 1; var.functions' validation holds overrides to that.
  function_defaults = {
    retrain_model = {
      source      = "retrain_model"
      description = "Retrain, evaluate, register and gate one model (retrain-requests)."
      trigger     = "retrain"
      ingress     = "ALLOW_INTERNAL_ONLY"
      memory      = "2Gi"
      cpu         = "1"
      timeout     = 540
      instances   = 5
      concurrency = 1
    }
    monitor_model = {
      source      = "monitor_model"
      description = "Drift and performance check of one model's champion (monitor-requests)."
      trigger     = "monitor"
      ingress     = "ALLOW_INTERNAL_ONLY"
      memory      = "1Gi"
      cpu         = "1"
      timeout     = 300
      instances   = 5
      concurrency = 1
    }
    housekeeping = {
      source      = "housekeeping"
      description = "Integrity sweep, backup snapshot, retention and state expiry of one model (housekeeping-requests)."
      trigger     = "housekeeping"
      ingress     = "ALLOW_INTERNAL_ONLY"
      memory      = "1Gi"
      cpu         = "1"
      timeout     = 540
      instances   = 2
      concurrency = 1
    }
    health = {
      source      = "health"
      description = "JSON health of the registry and every champion (uptime check target)."
      trigger     = null
      ingress     = "ALLOW_ALL" # uptime checkers call from outside; they present an OIDC token
      memory      = "1Gi"
      cpu         = "1"
      timeout     = 60
      instances   = 2
      concurrency = 1
    }
    route_alerts = {
      source      = "route_alerts"
      description = "Cloud Monitoring incident webhook (token-checked) into the alert router."
      trigger     = null
      # Cloud Monitoring webhooks come from outside Google's network edge; the Pub/Sub channel
      # (var.alert_channel) needs no public door.
      ingress     = var.alert_channel == "webhook" ? "ALLOW_ALL" : "ALLOW_INTERNAL_ONLY"
      memory      = "512Mi"
      cpu         = "1"
      timeout     = 60
      instances   = 3
      concurrency = 16
    }
    route_alert_events = {
      source      = "route_alerts"
      description = "model-events and flush ticks into the alert router."
      trigger     = "events"
      ingress     = "ALLOW_INTERNAL_ONLY"
      memory      = "512Mi"
      cpu         = "1"
      timeout     = 120
      instances   = 2
      concurrency = 16
    }
  }

  functions = {
    for key, f in local.function_defaults : key => merge(f, {
      name = replace(key, "_", "-")
      service = {
        memory          = coalesce(try(var.functions[key].memory, null), f.memory)
        cpu             = coalesce(try(var.functions[key].cpu, null), f.cpu)
        timeout_seconds = coalesce(try(var.functions[key].timeout_seconds, null), f.timeout)
        max_instances   = coalesce(try(var.functions[key].max_instances, null), f.instances)
        concurrency     = coalesce(try(var.functions[key].concurrency, null), f.concurrency)
        ingress         = f.ingress
      }
    })
  }

  # What warden.settings reads, for every function (and every Cloud Run job, jobs.tf).
  # WARDEN_CODE_VERSION is set by the module (the bundle hash); WARDEN_MONITORING_ENDPOINT,
  # WARDEN_SCHEDULER_ENDPOINT, WARDEN_RUN_ENDPOINT and WARDEN_CONFIG are for the local stack only
  # (settings.LOCAL_ONLY_ENV_VARS). WARDEN_RETRAIN_JOB/MONITOR_JOB name the job runner's jobs
  # (jobs.tf), "" while none is deployed (var.job_image null).
  environment = {
    WARDEN_PROJECT         = var.project_id
    WARDEN_LOCATION        = var.region
    WARDEN_REGISTRY_BUCKET = google_storage_bucket.bucket["registry"].name
    WARDEN_ALERT_BUCKET    = google_storage_bucket.bucket["alerts"].name
    WARDEN_DATA_BUCKET     = local.data_bucket
    WARDEN_BACKUP_BUCKET   = google_storage_bucket.bucket["backup"].name
    WARDEN_EVENTS_TOPIC    = google_pubsub_topic.topic["events"].name
    WARDEN_RETRAIN_TOPIC   = google_pubsub_topic.topic["retrain"].name
    WARDEN_RETRAIN_JOB     = var.job_image == null ? "" : local.job_names["retrain"]
    WARDEN_MONITOR_JOB     = var.job_image == null ? "" : local.job_names["monitor"]
    WARDEN_METRICS         = "on"
    WARDEN_LOG_LEVEL       = var.log_level
  }
}

module "function" {
  source      = "./modules/function"
  for_each    = local.functions
  project_id  = var.project_id
  region      = var.region
  prefix      = var.prefix
  name        = each.value.name
  description = each.value.description
  entry_point = each.key
  # Its own account; its roles are in iam.tf.
  service_account_email = google_service_account.function[each.key].email
  labels                = { warden-function = each.value.name }

  bundle = {
    bucket = google_storage_bucket.bucket["bundles"].name
    path   = "${path.module}/${var.bundle_dir}/${each.value.source}.zip"
  }
  # THREADS: functions-framework's gunicorn threads, one per request the instance may be given,
  # as Google recommends for Python (its default, 4 x os.cpu_count(), is unrelated to what Cloud
  # Run sends). Not a Warden setting: warden.settings never reads it.
  service     = each.value.service
  environment = merge(local.environment, { THREADS = tostring(each.value.service.concurrency) })
  secrets     = local.function_secrets[each.key]

  pubsub_trigger = each.value.trigger == null ? null : {
    topic                   = google_pubsub_topic.topic[each.value.trigger].id
    dead_letter_topic       = google_pubsub_topic.dead_letter[each.value.trigger].name
    invoker_service_account = google_service_account.pubsub_invoker.email
    max_delivery_attempts   = local.delivery.max_delivery_attempts
    minimum_backoff         = local.delivery.minimum_backoff
    maximum_backoff         = local.delivery.maximum_backoff
  }

  invokers = lookup(local.function_invokers, each.key, {})

  depends_on = [google_project_service.service, google_secret_manager_secret_iam_member.accessor]
}
