locals {
  # Registry: versions, aliases, run ledger, monitoring reports. Alerts: the alert router's state
  # (_alerting/), apart so that the public router holds no role on the registry (iam.tf). Backup:
  # registry snapshots. Bundles: function sources. Data: training data, unless one is given.
  buckets = merge(
    {
      registry = { retention_days = null }
      # Router state expires in housekeeping (warden.alerts.state.purge_expired: resolved groups,
      # ended silences, old notification log); an age rule could drop a live silence or group.
      alerts = { retention_days = null }
      # Snapshot retention is housekeeping's (warden.jobs.backup.prune_snapshots keeps the newest per
      # model however old): an age rule here could delete the last good backup.
      backup  = { retention_days = null }
      bundles = { retention_days = var.buckets.bundle_retention_days }
    },
    var.data_bucket == null ? { data = { retention_days = null } } : {},
  )
  data_bucket = var.data_bucket == null ? google_storage_bucket.bucket["data"].name : var.data_bucket
}

resource "google_storage_bucket" "bucket" {
  # checkov:skip=CKV_GCP_62:Usage logs are a legacy mechanism that needs yet another bucket; who wrote what is in Cloud Audit Logs (admin activity always, data access where the organisation enables it), and every registry change is also an immutable history object.
  for_each                    = local.buckets
  project                     = var.project_id
  name                        = "${var.prefix}-${each.key}"
  location                    = var.buckets.location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.buckets.force_destroy
  labels                      = { warden-bucket = each.key }

  # Every overwrite or delete keeps the previous generation for a while: a bad write (or a bad
  # restore) can be undone from the noncurrent versions.
  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      with_state                 = "ARCHIVED"
      days_since_noncurrent_time = var.buckets.noncurrent_retention_days
    }
    action {
      type = "Delete"
    }
  }

  # Old bundles (bundles bucket) and old snapshots (backup bucket) go after their retention.
  dynamic "lifecycle_rule" {
    for_each = each.value.retention_days == null ? [] : [each.value.retention_days]
    content {
      condition {
        age        = lifecycle_rule.value
        with_state = "LIVE"
      }
      action {
        type = "Delete"
      }
    }
  }

  depends_on = [google_project_service.service]
}
