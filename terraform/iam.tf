# One service account per function, and only the roles its code needs, each on the exact bucket,
# topic or secret (tests/test_terraform.py holds this table to what the code does). No project-wide
# role except roles/monitoring.metricWriter, which Cloud Monitoring only grants per project.
# Each Cloud Run job (jobs.tf) runs as its own account with exactly the access of the function it
# stands in for (local.principal_access), and only that function may start it.

locals {
  # buckets: one unconditioned role per bucket. prefixes: roles/storage.objectUser on one bucket,
  # but only on objects named "<one path segment>/<prefix>…", i.e. under that prefix in every
  # model's folder (the conditioned grant below). Only retrain_model (and the retrain job, its
  # stand-in) and housekeeping (retention deletes versions and may put a manifest back) may write
  # under MODEL/versions/ or MODEL/aliases/; tests/test_terraform.py fails if anything else can.
  access = {
    retrain_model = {
      # versions, aliases (CAS), run ledger; training data read-only
      buckets       = { registry = "roles/storage.objectUser", data = "roles/storage.objectViewer" }
      prefixes      = {}
      topics        = ["events"] # version_registered / promoted / rejected / failed
      project_roles = ["roles/monitoring.metricWriter"]
    }
    monitor_model = {
      # Reads (and lists) the registry: champion alias, manifest, profile, artifact, past runs...
      buckets = { registry = "roles/storage.objectViewer", data = "roles/storage.objectViewer" }
      # ...and writes only its own objects: MODEL/monitoring/<run>/{report.html,drift.json} and
      # the retrain-cooldown marker MODEL/monitoring/retrain-request.json (warden.jobs.monitor), its
      # run-ledger markers MODEL/runs/monitor/*.json and MODEL/status/monitor.json (warden.store.runs).
      prefixes      = { registry = ["monitoring/", "runs/monitor/", "status/monitor.json"] }
      topics        = ["events", "retrain"] # drift events; retrain requests on drift/degradation
      project_roles = ["roles/monitoring.metricWriter"]
    }
    housekeeping = {
      # retention deletes versions, expiry deletes run markers; snapshots go to backup; router
      # state expiry (warden.alerts.state.purge_expired) in the alert bucket
      buckets = {
        registry = "roles/storage.objectUser"
        backup   = "roles/storage.objectUser"
        alerts   = "roles/storage.objectUser"
      }
      prefixes      = {}
      topics        = ["events"] # integrity_failed
      project_roles = ["roles/monitoring.metricWriter"]
    }
    health = {
      buckets       = { registry = "roles/storage.objectViewer" } # reads manifests and artifacts
      prefixes      = {}
      topics        = []
      project_roles = []
    }
    # The routers read nothing from the registry (retrain receivers publish to Pub/Sub): alert
    # state (_alerting/, compare-and-swap) in its own bucket, and no registry role at all.
    route_alerts = {
      buckets       = { alerts = "roles/storage.objectUser" }
      prefixes      = {}
      topics        = []
      project_roles = []
    }
    route_alert_events = {
      buckets       = { alerts = "roles/storage.objectUser" }
      prefixes      = {}
      topics        = []
      project_roles = []
    }
  }

  # Who holds local.access: every function, and each job's account ("<job>_job") with the very
  # entry of its function (local.job_functions): the same use case, run in a Cloud Run job.
  principal_access = merge(local.access, {
    for job, fn in local.job_functions : "${job}_job" => local.access[fn]
  })

  members = merge(
    { for fn, sa in google_service_account.function : fn => "serviceAccount:${sa.email}" },
    { for job, sa in google_service_account.job : "${job}_job" => "serviceAccount:${sa.email}" },
  )

  bucket_names = {
    registry = google_storage_bucket.bucket["registry"].name
    alerts   = google_storage_bucket.bucket["alerts"].name
    backup   = google_storage_bucket.bucket["backup"].name
    data     = local.data_bucket
  }

  bucket_grants = merge([
    for principal, a in local.principal_access : {
      for bucket, role in a.buckets : "${principal}/${bucket}" => { principal = principal, bucket = bucket, role = role }
    }
  ]...)

  # IAM Conditions on Cloud Storage (uniform bucket-level access) see an object as
  # resource.name = "projects/_/buckets/BUCKET/objects/OBJECT", and extract("A{x}B") returns
  # what stands between A and the first B after it, or "" when there is none (Google's attribute
  # reference for IAM Conditions, "Resource name attribute" / extract():
  # https://cloud.google.com/iam/docs/conditions-attribute-reference#resource-name). A clause
  # holds only for OBJECT = "<segment>/<prefix>…": what precedes "/<prefix>" must be the
  # object's whole first path segment, so "m/versions/000001/monitoring/x" does not match
  # "monitoring/". Were extract() to take the last B instead, the clause would never hold (it
  # fails closed). Listing is a bucket-level permission that these grants never give; the
  # function's unconditioned objectViewer lists.
  prefix_clause = "(resource.name.extract(\"%[1]s{model}/%[2]s\") != \"\" && resource.name.extract(\"%[1]s{model}/%[2]s\") == resource.name.extract(\"%[1]s{model}/\"))"

  prefix_grants = merge([
    for principal, a in local.principal_access : {
      for bucket, prefixes in a.prefixes : "${principal}/${bucket}" => {
        principal = principal
        bucket    = bucket
        prefixes  = prefixes
        expression = join(" || ", [
          for p in prefixes :
          format(local.prefix_clause, "projects/_/buckets/${local.bucket_names[bucket]}/objects/", p)
        ])
      }
    }
  ]...)

  topic_grants = merge([
    for principal, a in local.principal_access : {
      for topic in a.topics : "${principal}/${topic}" => { principal = principal, topic = topic }
    }
  ]...)

  # Pub/Sub receivers in warden.yaml publish to topics named there (both router functions send).
  receiver_topic_grants = merge([
    for fn in ["route_alerts", "route_alert_events"] : {
      for topic in module.config.receiver_topics : "${fn}/${topic}" => { fn = fn, topic = topic }
    }
  ]...)

  project_grants = merge([
    for principal, a in local.principal_access : {
      for role in a.project_roles : "${principal}/${role}" => { principal = principal, role = role }
    }
  ]...)

  # What a function may do to the one job it hands work to (warden.jobs.dispatch): start an
  # execution with per-run overrides (env WARDEN_RUN_REQUEST, taskCount, timeout) and cancel one:
  # roles/run.jobsExecutorWithOverrides (run.jobs.run, run.jobs.runWithOverrides,
  # run.executions.cancel), granted on that job only, never on the project. Nothing to read the
  # execution: dispatch takes its name from the run operation's metadata and never polls it. No
  # actAs on the job's account: running a job needs a role on the job only (attaching the account
  # to the job is the deployer's, who has actAs).
  # https://cloud.google.com/iam/docs/roles-permissions/run (the role)
  # https://cloud.google.com/run/docs/execute/jobs ("Required roles": a role on the job)
  # https://cloud.google.com/run/docs/reference/rest/v1/namespaces.jobs/run (the permissions)
  job_runner_roles = ["roles/run.jobsExecutorWithOverrides"]

  job_runner_grants = merge([
    for job, j in local.jobs : {
      for role in local.job_runner_roles : "${job}/${role}" => { job = job, fn = j.function, role = role }
    }
  ]...)

  function_invokers = {
    # Cloud Monitoring webhooks carry no Google identity: the function checks its token itself.
    # With the Pub/Sub channel nothing outside needs to call it.
    route_alerts = var.alert_channel == "webhook" ? { public = "allUsers" } : {}
    # Uptime checks authenticate as the Monitoring service agent (OIDC).
    health = {
      uptime-check = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-monitoring-notification.iam.gserviceaccount.com"
    }
  }
}

resource "google_service_account" "function" {
  for_each     = local.functions
  project      = var.project_id
  account_id   = "${var.prefix}-${each.value.name}"
  display_name = "Warden ${each.value.name}"
  description  = "Runtime identity of the ${each.value.name} function."
  depends_on   = [google_project_service.service]
}

# Pub/Sub push subscriptions authenticate to the event functions as this account; it can do
# nothing but invoke them.
resource "google_service_account" "pubsub_invoker" {
  project      = var.project_id
  account_id   = "${var.prefix}-pubsub-push"
  display_name = "Warden Pub/Sub push"
  description  = "Identity of the push subscriptions that trigger Warden's event functions."
  depends_on   = [google_project_service.service]
}

# The Pub/Sub service agent mints the push OIDC tokens of that account.
resource "google_service_account_iam_member" "pubsub_token_creator" {
  service_account_id = google_service_account.pubsub_invoker.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

resource "google_storage_bucket_iam_member" "function" {
  for_each = local.bucket_grants
  bucket   = local.bucket_names[each.value.bucket]
  role     = each.value.role
  member   = local.members[each.value.principal]
}

# Write access to a function's own objects in every model's folder (access.*.prefixes).
resource "google_storage_bucket_iam_member" "prefix" {
  for_each = local.prefix_grants
  bucket   = local.bucket_names[each.value.bucket]
  role     = "roles/storage.objectUser"
  member   = local.members[each.value.principal]

  condition {
    title       = "${each.value.principal}-own-objects"
    description = "Only MODEL/${join(", MODEL/", each.value.prefixes)} in ${each.value.bucket}."
    expression  = each.value.expression
  }
}

resource "google_pubsub_topic_iam_member" "function" {
  for_each = local.topic_grants
  project  = var.project_id
  topic    = google_pubsub_topic.topic[each.value.topic].name
  role     = "roles/pubsub.publisher"
  member   = local.members[each.value.principal]
}

resource "google_pubsub_topic_iam_member" "receiver" {
  for_each = local.receiver_topic_grants
  project  = var.project_id
  topic    = each.value.topic
  role     = "roles/pubsub.publisher"
  member   = "serviceAccount:${google_service_account.function[each.value.fn].email}"
}

resource "google_project_iam_member" "function" {
  for_each = local.project_grants
  project  = var.project_id
  role     = each.value.role
  member   = local.members[each.value.principal]
}

# The triggering function may start (and read) its own job, and no other (local.job_runner_grants).
resource "google_cloud_run_v2_job_iam_member" "runner" {
  for_each = local.job_runner_grants
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_job.job[each.value.job].name
  role     = each.value.role
  member   = "serviceAccount:${google_service_account.function[each.value.fn].email}"
}
