# The job runner: work that outgrows one function (big retrains, sharded monitoring) runs as an
# execution of a Cloud Run job. The triggering function validates the request and starts an
# execution with per-run overrides (WARDEN_RUN_REQUEST, taskCount; warden.jobs.dispatch); the job
# runs the same package from the image the pipeline builds (Dockerfile: python -m
# warden.jobs.task). docs/deploy.md, "Cloud Run jobs".
locals {
  # Each job runs one use case of this function, as the function's stand-in: its account gets
  # exactly that function's access (iam.tf, local.principal_access), and only that function may
  # start it (iam.tf, google_cloud_run_v2_job_iam_member.runner).
  job_functions = {
    retrain = "retrain_model"
    monitor = "monitor_model"
  }

  # Sizing per job; var.jobs overrides it field by field (as var.functions does for functions).
  job_defaults = {
    retrain = { cpu = "4", memory = "16Gi", timeout_seconds = 3600, max_retries = 2 }
    monitor = { cpu = "2", memory = "4Gi", timeout_seconds = 3600, max_retries = 2 }
  }

  # Full names, built from strings rather than google_cloud_run_v2_job.job[*].id: every function
  # gets them in local.environment, and the jobs get local.environment too (a cycle otherwise).
  job_names = {
    for job in keys(local.job_functions) :
    job => "projects/${var.project_id}/locations/${var.region}/jobs/${var.prefix}-${job}"
  }

  # What warden.settings reads in a task: everything a function gets, plus WARDEN_JOB (which use
  # case). WARDEN_RUN_REQUEST is never set here: each execution gets it in its overrides.
  # WARDEN_CODE_VERSION is baked into the image (the build's commit, Dockerfile).
  job_environment = {
    for job in keys(local.job_functions) : job => merge(local.environment, { WARDEN_JOB = job })
  }

  # No image yet (var.job_image null, e.g. the first deploy, which creates the repository the
  # image is pushed to): no jobs, and the functions get empty WARDEN_RETRAIN_JOB/MONITOR_JOB.
  jobs = var.job_image == null ? {} : {
    for job, fn in local.job_functions : job => {
      function        = fn
      name            = "${var.prefix}-${job}"
      cpu             = coalesce(try(var.jobs[job].cpu, null), local.job_defaults[job].cpu)
      memory          = coalesce(try(var.jobs[job].memory, null), local.job_defaults[job].memory)
      timeout_seconds = coalesce(try(var.jobs[job].timeout_seconds, null), local.job_defaults[job].timeout_seconds)
      max_retries     = coalesce(try(var.jobs[job].max_retries, null), local.job_defaults[job].max_retries)
    }
  }

  job_repository = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.jobs.repository_id}"
}

# The image of the jobs, pushed by cloudbuild.yaml's job-image step as
# REGION-docker.pkg.dev/PROJECT/PREFIX-jobs/warden-jobs:<commit>; Terraform deploys its digest.
resource "google_artifact_registry_repository" "jobs" {
  # checkov:skip=CKV_GCP_84:The image holds Warden's public code and pinned open-source packages, no data or secret; Google-managed encryption applies. Add kms_key_name here if your policy requires CMEK.
  project       = var.project_id
  location      = var.region
  repository_id = "${var.prefix}-jobs"
  format        = "DOCKER"
  description   = "Warden's Cloud Run job image (warden-jobs), pushed by the deploy pipeline."
  labels        = { warden-repository = "jobs" }

  # Tags are commits: rebuilding a commit (a rollback, docs/deploy.md) pushes its tag again.
  # What runs is pinned by digest (var.job_image), so a moved tag changes no job.
  docker_config {
    immutable_tags = false
  }

  # Every apply pushes an image: keep the newest 10 (the deployed one is the newest), delete the
  # rest after 30 days. KEEP wins over DELETE.
  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "keep-newest"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      tag_state  = "ANY"
      older_than = "2592000s"
    }
  }

  depends_on = [google_project_service.service]
}

# One account per job (the job's identity); its roles are the function's, in iam.tf.
resource "google_service_account" "job" {
  for_each     = local.job_functions
  project      = var.project_id
  account_id   = "${var.prefix}-${each.key}-job"
  display_name = "Warden ${each.key} job"
  description  = "Runtime identity of the ${var.prefix}-${each.key} Cloud Run job (${each.value}'s work)."
  depends_on   = [google_project_service.service]
}

resource "google_cloud_run_v2_job" "job" {
  for_each = local.jobs
  project  = var.project_id
  location = var.region
  name     = each.value.name
  labels   = { warden-job = each.key }
  # A job holds no state (runs write to the registry): `terraform destroy` may remove it.
  deletion_protection = false

  template {
    # One task unless the execution's overrides ask for more (sharded monitoring).
    task_count = 1

    template {
      service_account       = google_service_account.job[each.key].email
      timeout               = "${each.value.timeout_seconds}s"
      max_retries           = each.value.max_retries
      execution_environment = "EXECUTION_ENVIRONMENT_GEN2"

      containers {
        # No command or args: the image's ENTRYPOINT, python -m warden.jobs.task.
        image = var.job_image

        resources {
          limits = {
            cpu    = each.value.cpu
            memory = each.value.memory
          }
        }

        dynamic "env" {
          for_each = local.job_environment[each.key]
          content {
            name  = env.key
            value = env.value
          }
        }
      }
    }
  }

  depends_on = [google_project_service.service]
}
