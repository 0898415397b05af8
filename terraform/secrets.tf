# The webhook token is generated here (Cloud Monitoring's channel needs the same value); the
# receivers' secrets (Slack URL, HMAC keys: the *_env names in warden.yaml's alerting section)
# are created by an operator before the first apply (README, "Deploy"), so no secret value ever
# sits in a tfvars file. A missing one fails the plan, naming it.

resource "random_password" "webhook_token" {
  length  = 48
  special = false # a basic-auth password: keep it to characters every client sends as is
}

resource "google_secret_manager_secret" "webhook_token" {
  project   = var.project_id
  secret_id = "${var.prefix}-webhook-token"
  replication {
    auto {}
  }
  depends_on = [google_project_service.service]
}

resource "google_secret_manager_secret_version" "webhook_token" {
  secret      = google_secret_manager_secret.webhook_token.id
  secret_data = random_password.webhook_token.result
}

data "google_secret_manager_secret" "receiver" {
  for_each  = toset(module.config.receiver_secret_envs)
  project   = var.project_id
  secret_id = "${var.prefix}-${lower(replace(each.value, "_", "-"))}"
}

locals {
  receiver_secrets = { for env, s in data.google_secret_manager_secret.receiver : env => s.secret_id }

  # Environment variable => secret id, per function.
  function_secrets = {
    retrain_model      = {}
    monitor_model      = {}
    housekeeping       = {}
    health             = {}
    route_alerts       = merge(local.receiver_secrets, { WARDEN_WEBHOOK_TOKEN = google_secret_manager_secret.webhook_token.secret_id })
    route_alert_events = local.receiver_secrets
  }

  secret_grants = merge([
    for fn, secrets in local.function_secrets : {
      for env, secret_id in secrets : "${fn}/${env}" => { fn = fn, secret_id = secret_id }
    }
  ]...)
}

resource "google_secret_manager_secret_iam_member" "accessor" {
  for_each  = local.secret_grants
  project   = var.project_id
  secret_id = each.value.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.function[each.value.fn].email}"
}
