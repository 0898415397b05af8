locals {
  # Every metric the code writes (warden.telemetry.metrics.CATALOGUE; the suite holds the two together).
  # Declared up front so alert policies and the dashboard can refer to them before the first run.
  metrics = {
    "model/silhouette"                = { labels = ["model", "version"], unit = "1", description = "Silhouette of a registered version on held-out data." }
    "model/roc_auc"                   = { labels = ["model", "version"], unit = "1", description = "ROC AUC of a registered version on held-out data." }
    "model/f1"                        = { labels = ["model", "version"], unit = "1", description = "F1 of a registered version on held-out data." }
    "model/accuracy"                  = { labels = ["model", "version"], unit = "1", description = "Accuracy of a registered version on held-out data." }
    "model/promoted"                  = { labels = ["model", "job"], unit = "1", description = "1 when a retrain promoted its candidate, else 0." }
    "retrain/duration"                = { labels = ["model", "job"], unit = "s", description = "Wall time of a successful retrain." }
    "run/success"                     = { labels = ["model", "job"], unit = "1", description = "1 per successful retrain or monitor run, 0 per failed one." }
    "drift/share"                     = { labels = ["model", "version"], unit = "1", description = "Share of features that drifted from the champion's profile." }
    "drift/dataset"                   = { labels = ["model", "version"], unit = "1", description = "1 when the dataset-level drift verdict is positive." }
    "drift/score"                     = { labels = ["model", "version", "feature"], unit = "1", description = "Per-feature drift statistic (see docs/drift.md)." }
    "drift/prediction"                = { labels = ["model", "version", "statistic"], unit = "1", description = "Prediction drift of served outputs against the champion's holdout outputs." }
    "monitor/performance"             = { labels = ["model", "version", "metric"], unit = "1", description = "Champion's metric on recent data." }
    "monitor/performance_drop"        = { labels = ["model", "version", "metric"], unit = "1", description = "Relative drop of that metric against the promoted value." }
    "housekeeping/heartbeat"          = { labels = ["model"], unit = "1", description = "1 at the end of each successful housekeeping run." }
    "housekeeping/integrity_failures" = { labels = ["model"], unit = "1", description = "Versions whose files are missing or differ from their manifest's sha256." }
    "housekeeping/deleted_versions"   = { labels = ["model"], unit = "1", description = "Versions retired by a housekeeping run's retention." }
  }
  metric_type = { for name, _ in local.metrics : name => "custom.googleapis.com/warden/${name}" }

  severity = { critical = "CRITICAL", error = "ERROR", warning = "WARNING", info = null }

  # Exactly one of the two router channels exists (var.alert_channel).
  notification_channels = concat(
    google_monitoring_notification_channel.router[*].id,
    google_monitoring_notification_channel.router_pubsub[*].id,
    var.alert_notification_channels,
  )
  function_services = [for f in local.functions : "\"${var.prefix}-${f.name}\""]
}

resource "google_monitoring_metric_descriptor" "warden" {
  for_each     = local.metrics
  project      = var.project_id
  type         = local.metric_type[each.key]
  display_name = "Warden ${each.key}"
  description  = each.value.description
  metric_kind  = "GAUGE"
  value_type   = "DOUBLE"
  unit         = each.value.unit

  dynamic "labels" {
    for_each = each.value.labels
    content {
      key        = labels.value
      value_type = "STRING"
    }
  }
  depends_on = [google_project_service.service]
}

# Cloud Monitoring posts incidents (schema 1.2) to route_alerts, which routes, groups, silences
# and inhibits them like every other alert. Basic auth, with the token as the password in
# sensitive_labels: a token in the URL (webhook_tokenauth) would be written to Cloud Run's request
# log and to every log line of the request, where whoever reads logs could forge or close
# incidents. The local Monitoring stand-in authenticates the same way (warden_local.policies).
resource "google_monitoring_notification_channel" "router" {
  count        = var.alert_channel == "webhook" ? 1 : 0
  project      = var.project_id
  display_name = "Warden alert router (${var.prefix})"
  type         = "webhook_basicauth"
  labels = {
    url      = module.function["route_alerts"].uri
    username = "monitoring" # warden_local.policies.BASIC_AUTH_USER
  }
  sensitive_labels {
    password = random_password.webhook_token.result
  }
}

# The alternative (var.alert_channel = "pubsub"): Cloud Monitoring publishes the same incident
# JSON to the model-events topic; route_alert_events tells it from a model event by its shape,
# and route_alerts needs no public ingress. The Monitoring notification agent may publish there
# (pubsub.tf).
resource "google_monitoring_notification_channel" "router_pubsub" {
  count        = var.alert_channel == "pubsub" ? 1 : 0
  project      = var.project_id
  display_name = "Warden alert router via Pub/Sub (${var.prefix})"
  type         = "pubsub"
  labels = {
    topic = google_pubsub_topic.topic["events"].id
  }
}

resource "google_monitoring_alert_policy" "config" {
  for_each     = module.config.alert_policies
  project      = var.project_id
  display_name = each.key # becomes the alert's alertname in the router
  combiner     = "OR"
  severity     = local.severity[each.value.severity]
  # "severity" carries warden.yaml's own word, "info" included (which the API cannot express):
  # the router falls back to it when an incident says "no severity".
  user_labels = { warden_policy = each.key, warden_prefix = var.prefix, severity = each.value.severity }

  conditions {
    display_name = "${each.value.metric} ${each.value.comparison} ${each.value.threshold}"
    condition_threshold {
      filter = join(" AND ", concat(
        ["metric.type=\"${local.metric_type[each.value.metric]}\"", "resource.type=\"global\""],
        [for k, v in each.value.filter : "metric.label.${k}=\"${v}\""],
      ))
      comparison      = each.value.api_comparison
      threshold_value = each.value.api_threshold
      duration        = "${each.value.duration_s}s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = each.value.api_comparison == "COMPARISON_GT" ? "ALIGN_MAX" : "ALIGN_MIN"
      }
      # Points arrive once per run: no point in the window is no breach, so incidents close.
      evaluation_missing_data = "EVALUATION_MISSING_DATA_INACTIVE"
      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "[${upper(each.value.severity)}] ${each.key}: $${metric.label.model}"
    content   = "Warden policy `${each.key}`: ${each.value.metric} ${each.value.comparison} ${each.value.threshold} for model $${metric.label.model}.\n\nRunbook: ${var.runbook_base_url}/${each.value.runbook}"
  }

  notification_channels = local.notification_channels
  depends_on            = [google_monitoring_metric_descriptor.warden]

  lifecycle {
    precondition {
      condition     = contains(keys(local.metrics), each.value.metric)
      error_message = "Policy ${each.key} watches ${each.value.metric}, which Warden does not write."
    }
  }
}

# Serving alerts (warden.yaml `serving:`, warden.config.ServingConfig): on the request metrics
# Cloud Run publishes for every service, a Cloud Function gen2 included, with no code in the
# application (https://cloud.google.com/monitoring/api/metrics_gcp, "run"): request_latencies, a
# DELTA DISTRIBUTION in ms, and request_count, a DELTA INT64 labelled response_code,
# response_code_class ("2xx" … "5xx") and route; both on resource cloud_run_revision, whose
# service_name label names the service. Cloud Run samples them every 60 s: the alignment period.
# The local Monitoring stand-in evaluates the same policies (warden_local.policies).
locals {
  serving_latency = { for name, p in module.config.serving_policies : name => p if p.kind == "latency" }
  serving_errors  = { for name, p in module.config.serving_policies : name => p if p.kind == "errors" }
  serving_filter = {
    for name, p in module.config.serving_policies : name => join(" AND ", [
      "resource.type=\"cloud_run_revision\"",
      "resource.label.service_name=\"${p.service}\"",
    ])
  }
}

# p95 over every request of the service: ALIGN_DELTA keeps each series' distribution per 60 s,
# and REDUCE_PERCENTILE_95 merges the series of all revisions, routes and response codes before
# taking the percentile (valid for DELTA distributions: Aggregation.Reducer,
# https://cloud.google.com/monitoring/api/ref_v3/rest/v3/projects.alertPolicies#aggregation).
# ALIGN_PERCENTILE_95 + REDUCE_MAX would page on one slow 404 in a series of its own.
resource "google_monitoring_alert_policy" "serving_latency" {
  for_each     = local.serving_latency
  project      = var.project_id
  display_name = each.key # the alertname in the router
  combiner     = "OR"
  severity     = local.severity[each.value.severity]
  user_labels  = { warden_policy = each.key, warden_prefix = var.prefix, severity = each.value.severity }

  conditions {
    display_name = "p95 latency of ${each.value.service} > ${each.value.threshold} ms"
    condition_threshold {
      filter          = "metric.type=\"run.googleapis.com/request_latencies\" AND ${local.serving_filter[each.key]}"
      comparison      = "COMPARISON_GT"
      threshold_value = each.value.threshold
      duration        = "${each.value.duration_s}s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_PERCENTILE_95"
        group_by_fields      = ["resource.label.service_name"]
      }
      # No request in a window is no breach: an idle service closes its incident.
      evaluation_missing_data = "EVALUATION_MISSING_DATA_INACTIVE"
      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "[${upper(each.value.severity)}] ${each.key}: $${resource.label.service_name}"
    content   = "Serving policy `${each.key}`: p95 request latency of Cloud Run service `${each.value.service}` above ${each.value.threshold} ms for ${each.value.duration_s} s.\n\nRunbook: ${var.runbook_base_url}/${each.value.runbook}"
  }

  notification_channels = local.notification_channels
}

# 5xx share: a ratio condition (MetricThreshold.denominator_filter, "the ratio of the two is
# compared with the threshold"; the Terraform google_monitoring_alert_policy resource,
# conditions.condition_threshold.denominator_filter and denominator_aggregations,
# https://registry.terraform.io/providers/hashicorp/google/latest/docs/resources/monitoring_alert_policy).
# Numerator and denominator are aligned and reduced alike (ALIGN_RATE, REDUCE_SUM by service), as
# a ratio condition requires, so the value is 5xx requests / all requests per 60 s.
resource "google_monitoring_alert_policy" "serving_errors" {
  for_each     = local.serving_errors
  project      = var.project_id
  display_name = each.key # the alertname in the router
  combiner     = "OR"
  severity     = local.severity[each.value.severity]
  user_labels  = { warden_policy = each.key, warden_prefix = var.prefix, severity = each.value.severity }

  conditions {
    display_name = "5xx share of ${each.value.service} > ${each.value.threshold}"
    condition_threshold {
      filter             = "metric.type=\"run.googleapis.com/request_count\" AND ${local.serving_filter[each.key]} AND metric.label.response_code_class=\"5xx\""
      denominator_filter = "metric.type=\"run.googleapis.com/request_count\" AND ${local.serving_filter[each.key]}"
      comparison         = "COMPARISON_GT"
      threshold_value    = each.value.threshold
      duration           = "${each.value.duration_s}s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.service_name"]
      }
      denominator_aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.service_name"]
      }
      # No 5xx (or no request) in a window is no breach.
      evaluation_missing_data = "EVALUATION_MISSING_DATA_INACTIVE"
      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "[${upper(each.value.severity)}] ${each.key}: $${resource.label.service_name}"
    content   = "Serving policy `${each.key}`: share of 5xx answers of Cloud Run service `${each.value.service}` above ${each.value.threshold} for ${each.value.duration_s} s.\n\nRunbook: ${var.runbook_base_url}/${each.value.runbook}"
  }

  notification_channels = local.notification_channels
}

resource "google_monitoring_alert_policy" "function_errors" {
  project      = var.project_id
  display_name = "function-errors"
  combiner     = "OR"
  severity     = "ERROR"
  user_labels  = { warden_policy = "function-errors", warden_prefix = var.prefix }

  conditions {
    display_name = "5xx rate of a Warden function"
    condition_threshold {
      filter          = "metric.type=\"run.googleapis.com/request_count\" AND resource.type=\"cloud_run_revision\" AND metric.label.response_code_class=\"5xx\" AND resource.label.service_name=one_of(${join(",", local.function_services)})"
      comparison      = "COMPARISON_GT"
      threshold_value = var.error_rate_threshold
      duration        = "300s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.service_name"]
      }
      trigger {
        count = 1
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "[ERROR] function-errors: $${resource.label.service_name}"
    content   = "A Warden function answers 5xx (retryable failures; Pub/Sub redelivers, then dead-letters).\n\nRunbook: ${var.runbook_base_url}/docs/RUNBOOKS.md#high-error-rate"
  }
  notification_channels = local.notification_channels
}

# A model whose monitor job stopped reporting (paused job, broken trigger, failing before it
# writes anything). Metric absence is capped at 23.5 h by Cloud Monitoring: slower cadences are
# covered by the health function's staleness, which the uptime check below watches.
resource "google_monitoring_alert_policy" "stale_pipeline" {
  project      = var.project_id
  display_name = "stale-pipeline"
  combiner     = "OR"
  severity     = "WARNING"
  user_labels  = { warden_policy = "stale-pipeline", warden_prefix = var.prefix }

  conditions {
    display_name = "no monitor run/success point"
    condition_absent {
      filter   = "metric.type=\"${local.metric_type["run/success"]}\" AND resource.type=\"global\" AND metric.label.job=\"monitor\""
      duration = "${floor(var.staleness_hours * 60) * 60}s"
      aggregations {
        alignment_period   = "3600s"
        per_series_aligner = "ALIGN_COUNT"
      }
      trigger {
        count = 1
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "[WARNING] stale-pipeline: $${metric.label.model}"
    content   = "No monitor run reported for model $${metric.label.model} in ${var.staleness_hours} h.\n\nRunbook: ${var.runbook_base_url}/docs/RUNBOOKS.md#stale-pipeline"
  }
  notification_channels = local.notification_channels
  depends_on            = [google_monitoring_metric_descriptor.warden]
}

# A refused notification is an alert that reached no one: the router logs every refusal at ERROR
# with refused=true (warden.alerts.router). A log-match condition, so it fires on the first one.
resource "google_monitoring_alert_policy" "router_refusals" {
  project      = var.project_id
  display_name = "router-refusals"
  combiner     = "OR"
  severity     = "ERROR"
  user_labels  = { warden_policy = "router-refusals", warden_prefix = var.prefix, severity = "error" }

  conditions {
    display_name = "the alert router refused a notification"
    condition_matched_log {
      filter = join(" AND ", [
        "resource.type=\"cloud_run_revision\"",
        "resource.labels.service_name=(\"${var.prefix}-route-alerts\" OR \"${var.prefix}-route-alert-events\")",
        "severity>=ERROR",
        "jsonPayload.refused=true",
      ])
      label_extractors = { service = "EXTRACT(resource.labels.service_name)" }
    }
  }

  alert_strategy {
    notification_rate_limit {
      period = "3600s"
    }
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "[ERROR] router-refusals: $${log.extracted_label.service}"
    content   = "The alert router refused a notification (bad credentials, not JSON, too large, no incident or incident_id): an alert may have reached no one.\n\nRunbook: ${var.runbook_base_url}/docs/RUNBOOKS.md#router-refusals"
  }
  notification_channels = local.notification_channels
}

resource "google_monitoring_alert_policy" "dead_letters" {
  project      = var.project_id
  display_name = "dead-letters"
  combiner     = "OR"
  severity     = "ERROR"
  user_labels  = { warden_policy = "dead-letters", warden_prefix = var.prefix }

  conditions {
    display_name = "messages parked in a dead-letter topic"
    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/topic/send_message_operation_count\" AND resource.type=\"pubsub_topic\" AND resource.label.topic_id=one_of(${join(",", [for t in google_pubsub_topic.dead_letter : "\"${t.name}\""])})"
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_SUM"
      }
      trigger {
        count = 1
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "[ERROR] dead-letters: $${resource.label.topic_id}"
    content   = "A function failed on a message ${local.delivery.max_delivery_attempts} times; it is held in the dead-letter subscription.\n\nRunbook: ${var.runbook_base_url}/docs/RUNBOOKS.md#dead-letters"
  }
  notification_channels = local.notification_channels
}

# A version whose files no longer match their manifest (found by housekeeping's daily sweep; the
# same finding also reaches the router as an integrity_failed model event).
resource "google_monitoring_alert_policy" "integrity" {
  project      = var.project_id
  display_name = "integrity-failure"
  combiner     = "OR"
  severity     = "CRITICAL"
  user_labels  = { warden_policy = "integrity-failure", warden_prefix = var.prefix }

  conditions {
    display_name = "versions failing their sha256"
    condition_threshold {
      filter          = "metric.type=\"${local.metric_type["housekeeping/integrity_failures"]}\" AND resource.type=\"global\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "3600s"
        per_series_aligner = "ALIGN_MAX"
      }
      evaluation_missing_data = "EVALUATION_MISSING_DATA_INACTIVE"
      trigger {
        count = 1
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "[CRITICAL] integrity-failure: $${metric.label.model}"
    content   = "Housekeeping found versions of $${metric.label.model} whose files differ from their manifest.\n\nRunbook: ${var.runbook_base_url}/docs/RUNBOOKS.md#integrity-failure"
  }
  notification_channels = local.notification_channels
  depends_on            = [google_monitoring_metric_descriptor.warden]
}

resource "google_monitoring_uptime_check_config" "health" {
  project      = var.project_id
  display_name = "${var.prefix}-health"
  timeout      = "30s"
  period       = "300s"

  http_check {
    # fail_on=stale: a scheduled job past twice its period fails the check too (warden.jobs.health).
    path           = "/?fail_on=stale"
    port           = 443
    use_ssl        = true
    validate_ssl   = true
    request_method = "GET"
    accepted_response_status_codes {
      status_class = "STATUS_CLASS_2XX"
    }
    # health answers 503 when a champion fails to verify or a job is stale.
    service_agent_authentication {
      type = "OIDC_TOKEN"
    }
  }

  monitored_resource {
    type = "uptime_url"
    labels = {
      project_id = var.project_id
      host       = trimsuffix(trimprefix(module.function["health"].uri, "https://"), "/")
    }
  }
}

resource "google_monitoring_alert_policy" "health" {
  project      = var.project_id
  display_name = "health-check"
  combiner     = "OR"
  severity     = "ERROR"
  user_labels  = { warden_policy = "health-check", warden_prefix = var.prefix }

  conditions {
    display_name = "health uptime check failing"
    condition_threshold {
      filter          = "metric.type=\"monitoring.googleapis.com/uptime_check/check_passed\" AND resource.type=\"uptime_url\" AND metric.label.check_id=\"${google_monitoring_uptime_check_config.health.uptime_check_id}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 1
      duration        = "600s"
      aggregations {
        alignment_period     = "600s"
        per_series_aligner   = "ALIGN_NEXT_OLDER"
        cross_series_reducer = "REDUCE_COUNT_FALSE"
        group_by_fields      = ["resource.label.host"]
      }
      trigger {
        count = 1
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "[ERROR] health-check failing"
    content   = "Warden's health function answers non-2xx: a champion does not verify, the registry is unreachable, or a pipeline is stale.\n\nRunbook: ${var.runbook_base_url}/docs/RUNBOOKS.md#health-check"
  }
  notification_channels = local.notification_channels
}

resource "google_monitoring_dashboard" "models" {
  project = var.project_id
  dashboard_json = jsonencode({
    displayName = "Warden models (${var.prefix})"
    mosaicLayout = {
      columns = 12
      tiles = [
        for i, name in keys(local.metrics) : {
          xPos   = (i % 2) * 6
          yPos   = floor(i / 2) * 4
          width  = 6
          height = 4
          widget = {
            title = name
            xyChart = {
              dataSets = [{
                plotType = "LINE"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter = "metric.type=\"${local.metric_type[name]}\" AND resource.type=\"global\""
                    aggregation = {
                      alignmentPeriod    = "3600s"
                      perSeriesAligner   = "ALIGN_MAX"
                      crossSeriesReducer = "REDUCE_MAX"
                      groupByFields      = ["metric.label.model"]
                    }
                  }
                }
              }]
            }
          }
        }
      ]
    }
  })
  depends_on = [google_monitoring_metric_descriptor.warden]
}
