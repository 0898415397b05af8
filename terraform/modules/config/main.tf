# Pure derivations from warden.yaml: no provider, no resource. The root module builds scheduler
# jobs, alert policies and secret bindings from these outputs, and the test suite evaluates this
# module with a real `terraform apply` (possible offline, as it needs no provider) and compares
# the result with what the Python code derives from the same file (warden.config.schedules, warden.config).

locals {
  config = yamldecode(var.config_yaml)
  models = try(local.config.models, {})

  # Job kinds and the topic kind each publishes to (warden.config.schedules.TOPICS).
  job_kinds = ["retrain", "monitor", "housekeeping"]

  model_jobs = merge([
    for model, spec in local.models : {
      for kind in local.job_kinds : "${model}-${kind}" => {
        model    = model
        kind     = kind
        topic    = kind
        cron     = spec.schedules[kind].cron
        timezone = try(spec.schedules[kind].timezone, "Etc/UTC")
        # Cloud Scheduler's data is static: exactly warden.config.schedules.JobSpec.payload().
        data       = jsonencode({ schema = 1, model = model, reason = "schedule" })
        attributes = { model = model, kind = kind }
      } if try(spec.schedules[kind], null) != null
    }
  ]...)

  alerting_enabled = try(local.config.alerting, null) != null

  # Flushes due alert groups when no new alert arrives (warden.config.schedules.ALERT_FLUSH).
  flush_job = local.alerting_enabled ? {
    "alerts-flush" = {
      model      = "alerts"
      kind       = "flush"
      topic      = "events"
      cron       = "* * * * *"
      timezone   = "Etc/UTC"
      data       = jsonencode({ schema = 1, kind = "flush" })
      attributes = { kind = "flush" }
    }
  } : {}

  receivers = try(local.config.alerting.receivers, [])

  # Environment variables named by receivers (webhook URLs, HMAC keys): secrets, never in the
  # file itself; route_alerts reads them through warden.settings.secret().
  receiver_secret_envs = sort(distinct(flatten([
    for r in local.receivers : [
      for kind in ["slack", "webhook"] : [
        for field in ["url_env", "secret_env"] : r[kind][field]
        if try(r[kind][field], null) != null
      ] if try(r[kind], null) != null
    ]
  ])))

  receiver_topics = sort(distinct([
    for r in local.receivers : r.pubsub.topic if try(r.pubsub.topic, null) != null
  ]))

  # Cloud Monitoring's threshold conditions accept only GT and LT: ">=" and "<=" become a strict
  # comparison against a threshold moved by a relative 1e-9, which is the same test for any value
  # a metric can take (the suite checks this against AlertPolicy.breached).
  api_comparison  = { ">" = "COMPARISON_GT", ">=" = "COMPARISON_GT", "<" = "COMPARISON_LT", "<=" = "COMPARISON_LT" }
  threshold_nudge = { ">" = 0, ">=" = -1, "<" = 0, "<=" = 1 }

  # Defaults mirror warden.config.AlertPolicy.
  alert_policies = {
    for p in try(local.config.alert_policies, []) : p.name => {
      api_comparison = local.api_comparison[try(p.comparison, ">=")]
      api_threshold  = p.threshold + local.threshold_nudge[try(p.comparison, ">=")] * 0.000000001 * max(1, abs(p.threshold))
      metric         = p.metric
      comparison     = try(p.comparison, ">=")
      threshold      = p.threshold
      duration_s     = try(p.duration_s, 0)
      severity       = try(p.severity, "warning")
      filter         = try(p.filter, {})
      runbook        = try(p.runbook, "")
    }
  }

  # Serving alerts (warden.config.ServingConfig.policies): one policy per declared latency or
  # errors block of a Cloud Run service, named SERVICE-latency / SERVICE-errors. Defaults mirror
  # warden.config.ServingLatency and ServingErrors.
  # Absent, null or without services: none (a for over null fails, and try() turns it into []).
  serving_services = try([for s in local.config.serving.services : s], [])
  serving_policies = merge(
    {
      for s in local.serving_services : "${s.name}-latency" => {
        kind       = "latency"
        service    = s.name
        threshold  = s.latency.p95_ms
        duration_s = try(s.latency.duration_s, 300)
        severity   = try(s.latency.severity, "warning")
        runbook    = try(s.latency.runbook, "docs/RUNBOOKS.md#serving-latency")
      } if try(s.latency, null) != null
    },
    {
      for s in local.serving_services : "${s.name}-errors" => {
        kind       = "errors"
        service    = s.name
        threshold  = s.errors.rate
        duration_s = try(s.errors.duration_s, 300)
        severity   = try(s.errors.severity, "error")
        runbook    = try(s.errors.runbook, "docs/RUNBOOKS.md#serving-errors")
      } if try(s.errors, null) != null
    },
  )
}
