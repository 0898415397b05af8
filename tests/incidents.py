"""Cloud Monitoring incident notifications as Google documents and sends them: the fixtures of
every test that feeds an incident to the router, one per condition kind.

Nothing here is derived from Warden's own Monitoring stand-in (``warden_local.policies``): the
stand-in is held to these shapes (tests/test_policies.py), never the other way round. Each
payload names its source in a comment. The sources:

[DOC]    Google Cloud, "Create and manage notification channels", section "Webhooks", schema
         version 1.2 — https://cloud.google.com/monitoring/support/notification-options#webhooks
         (its example payload is quoted verbatim, with that link, in target/goalert's
         ``integrationkey/gcp`` package). The documented field list: incident_id,
         scoping_project_id, scoping_project_number, url, severity, started_at, ended_at, state,
         summary, apigee_url, observed_value, resource{type, labels}, resource_type_display_name,
         resource_id, resource_display_name, resource_name, metric{type, displayName, labels},
         metadata{system_labels, user_labels}, policy_name, policy_user_labels, documentation,
         condition, condition_name, threshold_value — and ``version: "1.2"``.
[COND]   Cloud Monitoring API v3, ``projects.alertPolicies`` resource, ``Condition`` (the JSON
         shape of ``incident.condition``): conditionThreshold, conditionAbsent,
         conditionMatchedLog, conditionMonitoringQueryLanguage,
         conditionPrometheusQueryLanguage, conditionSql —
         https://cloud.google.com/monitoring/api/ref_v3/rest/v3/projects.alertPolicies#Condition
[TEST]   The payload of the console's "send test notification" for a webhook channel: ``version``
         is ``"test"``, ``state`` is ``"OPEN"`` (upper case), ``documentation`` is a plain string,
         ``started_at``/``ended_at`` are 0 — as reproduced from the notification-options page in
         cloudforet-io/tsc#8 and cloudforet-io/plugin-google-monitoring-mon-webhook.
[UPTIME] An uptime-check incident as delivered (open and close), reproduced in
         Agilicus/stackdriver-google-chat's README: no metric, no severity, no documentation, no
         condition, no threshold/observed value. Uptime alerting policies:
         https://cloud.google.com/monitoring/uptime-checks/uptime-alerting-policies
[LOG]    "Configure log-based alerting policies",
         https://cloud.google.com/logging/docs/alerting/log-based-alerts: a log-match condition
         counts no metric, so its incidents carry no ``metric``, ``threshold_value`` or
         ``observed_value``; labels from ``labelExtractors`` and the log entry's monitored
         resource identify what fired.
[PUBSUB] notification-options#pubsub: a Pub/Sub channel publishes the same JSON (schema 1.2) as
         the message data.

The summaries' exact wording is Google's business: the router treats them as opaque text.
"""

from __future__ import annotations

import copy
from typing import Any

PROJECT = "internal-project"

# [DOC] The documented example, verbatim (a *closed* incident; note "no severity" in lower case,
# documentation.links, and the documentation content's own typos, kept as published).
DOCUMENTED_EXAMPLE: dict[str, Any] = {
    "incident": {
        "incident_id": "0.opqiw61fsv7p",
        "scoping_project_id": "internal-project",
        "scoping_project_number": 12345,
        "url": "https://console.cloud.google.com/monitoring/alerting/incidents/0.lxfiw61fsv7p?project=internal-project",
        "severity": "no severity",
        "started_at": 1577840461,
        "ended_at": 1577877071,
        "state": "closed",
        "resource_id": "11223344",
        "resource_name": "internal-project gke-cluster-1-default-pool-e2df4cbd-dgp3",
        "resource_display_name": "gke-cluster-1-default-pool-e2df4cbd-dgp3",
        "resource_type_display_name": "VM Instance",
        "resource": {
            "type": "gce_instance",
            "labels": {
                "instance_id": "11223344",
                "project_id": "internal-project",
                "zone": "us-central1-c",
            },
        },
        "metric": {
            "type": "compute.googleapis.com/instance/cpu/utilization",
            "displayName": "CPU utilization",
            "labels": {"instance_name": "the name of the VM instance"},
        },
        "metadata": {
            "system_labels": {"labelkey": "labelvalue"},
            "user_labels": {"labelkey": "labelvalue"},
        },
        "policy_name": "Monitor-Project-Cluster",
        "policy_user_labels": {"user-label-1": "important label", "user-label-2": "another label"},
        "condition_name": "VM Instance - CPU utilization [MAX]",
        "threshold_value": "0.9",
        "observed_value": "0.835",
        "condition": {
            "name": "projects/internal-project/alertPolicies/1234567890123456789/conditions/1234567890123456789",
            "displayName": "VM Instance - CPU utilization [MAX]",
            "conditionThreshold": {
                "filter": 'metric.type="compute.googleapis.com/instance/cpu/utilization" '
                'resource.type="gce_instance" metadata.system_labels."state"="ACTIVE"',
                "aggregations": [{"alignmentPeriod": "120s", "perSeriesAligner": "ALIGN_MEAN"}],
                "comparison": "COMPARISON_GT",
                "thresholdValue": 0.9,
                "duration": "0s",
                "trigger": {"count": 1},
            },
        },
        "documentation": {
            "content": "TEST ALERT\n\npolicy.name=projects/internal-project/alertPolicies/"
            "1234567890123456789\n\npolicy.display_name=Monitored-Project-NO-GROUPBY\n\n"
            "condition.name=projects/nternal-project/alertPolicies/1234567890123456789/"
            "conditions/1234567890123456789\n\ncondition.display_name=VM Instance - CPU "
            "utilization [MAX]\n\nproject=internal-project\n\nresrouce.project=internal-project"
            " \n\nDONE\n",
            "mime_type": "text/markdown",
            "subject": "ALERT - No severity",
            "links": [
                {
                    "displayName": "Playbook",
                    "url": "https://myownpersonaldomain.com/playbook?name=${resource.name}",
                }
            ],
        },
        "summary": "CPU utilization for internal-project gke-cluster-1-16-default-pool-e2df4cbd-"
        "dgp3 with metric labels {instance_name=gke-cluster-1-default-pool-e2df4cbd-dgp3} and "
        "system labels {state=ACTIVE} returned to normal with a value of 0.835.",
    },
    "version": "1.2",
}

# [DOC] + [COND] A metric-threshold incident on one of Warden's own metrics, opening: the
# documented field set, with the documented lower-case severity spelling for a policy whose
# severity is set ("warning"), policy user labels as Terraform sets them (terraform/monitoring.tf)
# and the model in the metric labels.
THRESHOLD_OPEN: dict[str, Any] = {
    "incident": {
        "incident_id": "0.nvmkgq5w0d1a",
        "scoping_project_id": PROJECT,
        "scoping_project_number": 12345,
        "url": f"https://console.cloud.google.com/monitoring/alerting/incidents/0.nvmkgq5w0d1a?project={PROJECT}",
        "severity": "warning",
        "started_at": 1780000000,
        "ended_at": None,
        "state": "open",
        "summary": "drift/share for global with metric labels {model=customer-segments, "
        "version=3} is above the threshold of 0.500 with a value of 0.700.",
        "apigee_url": "",
        "observed_value": "0.700",
        "resource": {"type": "global", "labels": {"project_id": PROJECT}},
        "resource_type_display_name": "Global",
        "resource_id": "",
        "resource_display_name": "",
        "resource_name": f"{PROJECT} Global labels {{project_id={PROJECT}}}",
        "metric": {
            "type": "custom.googleapis.com/warden/drift/share",
            "displayName": "drift/share",
            "labels": {"model": "customer-segments", "version": "3"},
        },
        "metadata": {"system_labels": {}, "user_labels": {}},
        "policy_name": "model-drift",
        "policy_user_labels": {"warden_policy": "model-drift", "warden_prefix": "warden"},
        "condition_name": "drift/share >= 0.5",
        "threshold_value": "0.5",
        "condition": {
            "name": f"projects/{PROJECT}/alertPolicies/111/conditions/222",
            "displayName": "drift/share >= 0.5",
            "conditionThreshold": {
                "filter": 'metric.type="custom.googleapis.com/warden/drift/share" '
                'resource.type="global"',
                "aggregations": [{"alignmentPeriod": "60s", "perSeriesAligner": "ALIGN_MAX"}],
                "comparison": "COMPARISON_GT",
                "thresholdValue": 0.499999999,
                "duration": "0s",
                "trigger": {"count": 1},
            },
        },
        "documentation": {
            "content": "Runbook: docs/RUNBOOKS.md#model-drift",
            "mime_type": "text/markdown",
            "subject": "[WARNING] model-drift: customer-segments",
        },
    },
    "version": "1.2",
}

# [DOC] + [COND] A metric-absence incident (Terraform's stale-pipeline policy, condition_absent):
# the metric is known, but there is no observed value and no threshold.
ABSENCE_OPEN: dict[str, Any] = {
    "incident": {
        "incident_id": "0.abs3nce0001",
        "scoping_project_id": PROJECT,
        "scoping_project_number": 12345,
        "url": f"https://console.cloud.google.com/monitoring/alerting/incidents/0.abs3nce0001?project={PROJECT}",
        "severity": "warning",
        "started_at": 1780003600,
        "ended_at": None,
        "state": "open",
        "summary": "run/success for global with metric labels {job=monitor, "
        "model=breast-cancer-risk} is absent for 23h 30m.",
        "resource": {"type": "global", "labels": {"project_id": PROJECT}},
        "resource_type_display_name": "Global",
        "resource_name": f"{PROJECT} Global labels {{project_id={PROJECT}}}",
        "metric": {
            "type": "custom.googleapis.com/warden/run/success",
            "displayName": "run/success",
            "labels": {"job": "monitor", "model": "breast-cancer-risk"},
        },
        "metadata": {"system_labels": {}, "user_labels": {}},
        "policy_name": "stale-pipeline",
        "policy_user_labels": {"warden_policy": "stale-pipeline", "warden_prefix": "warden"},
        "condition_name": "no successful monitor run",
        "condition": {
            "name": f"projects/{PROJECT}/alertPolicies/333/conditions/444",
            "displayName": "no successful monitor run",
            "conditionAbsent": {
                "filter": 'metric.type="custom.googleapis.com/warden/run/success" '
                'AND resource.type="global" AND metric.label.job="monitor"',
                "duration": "84600s",
                "aggregations": [{"alignmentPeriod": "300s", "perSeriesAligner": "ALIGN_COUNT"}],
                "trigger": {"count": 1},
            },
        },
        "documentation": {"content": "Runbook: docs/RUNBOOKS.md", "mime_type": "text/markdown"},
    },
    "version": "1.2",
}

# [LOG] + [COND] A log-match incident: no metric, no threshold_value, no observed_value, no
# documentation (the policy has none); the resource is the matched entry's monitored resource.
LOG_MATCH_OPEN: dict[str, Any] = {
    "incident": {
        "incident_id": "0.l0gmatch0001",
        "scoping_project_id": PROJECT,
        "scoping_project_number": 12345,
        "url": f"https://console.cloud.google.com/monitoring/alerting/incidents/0.l0gmatch0001?project={PROJECT}",
        "severity": "Error",
        "started_at": 1780007200,
        "ended_at": None,
        "state": "open",
        "summary": "Log match condition fired for Cloud Run Revision with "
        "{service_name=warden-retrain-model, revision_name=warden-retrain-model-00042}",
        "resource": {
            "type": "cloud_run_revision",
            "labels": {
                "project_id": PROJECT,
                "service_name": "warden-retrain-model",
                "revision_name": "warden-retrain-model-00042",
                "location": "europe-west1",
                "configuration_name": "warden-retrain-model",
            },
        },
        "resource_type_display_name": "Cloud Run Revision",
        "resource_name": f"{PROJECT} Cloud Run Revision labels {{service_name=warden-retrain-model}}",
        "metadata": {"system_labels": {}, "user_labels": {}},
        "policy_name": "retrain-refused-requests",
        "policy_user_labels": {"team": "ml-platform"},
        "condition_name": "retrain request refused",
        "condition": {
            "name": f"projects/{PROJECT}/alertPolicies/555/conditions/666",
            "displayName": "retrain request refused",
            "conditionMatchedLog": {
                "filter": 'resource.type="cloud_run_revision" AND severity>=ERROR '
                'AND jsonPayload.message:"request refused"',
                "labelExtractors": {"service": "EXTRACT(resource.labels.service_name)"},
            },
        },
    },
    "version": "1.2",
}

# [UPTIME] verbatim but for the host (the capture's placeholder "MYHOST" and project "XXXX").
UPTIME_OPEN: dict[str, Any] = {
    "incident": {
        "condition_name": "Uptime Health Check on api-noc-users",
        "ended_at": None,
        "incident_id": "0.ligwyr056k2l",
        "policy_name": "api - noc - users",
        "resource": {"labels": {"host": "warden-health.example.run.app"}, "type": "uptime_url"},
        "resource_id": "",
        "resource_name": "Uptime Check URL labels {host=warden-health.example.run.app}",
        "started_at": 1579559444,
        "state": "open",
        "summary": "An uptime check on Uptime Check URL labels "
        "{host=warden-health.example.run.app} is failing.",
        "url": "https://app.google.stackdriver.com/incidents/0.ligwyr056k2l?project=XXXX",
    },
    "version": "1.2",
}
UPTIME_CLOSED: dict[str, Any] = {
    "incident": {
        **UPTIME_OPEN["incident"],
        "ended_at": 1579559552,
        "state": "closed",
        "summary": "The uptime check for Uptime Check URL labels "
        "{host=warden-health.example.run.app} has returned to a normal state.",
    },
    "version": "1.2",
}

# [DOC] + [COND] A PromQL condition's incident (Managed Service for Prometheus): the condition
# carries the query; there is no threshold (the query is the threshold) and, as for log-match,
# no metric object is promised.
PROMQL_OPEN: dict[str, Any] = {
    "incident": {
        "incident_id": "0.pr0mql000001",
        "scoping_project_id": PROJECT,
        "scoping_project_number": 12345,
        "url": f"https://console.cloud.google.com/monitoring/alerting/incidents/0.pr0mql000001?project={PROJECT}",
        "severity": "critical",
        "started_at": 1780010800,
        "ended_at": None,
        "state": "open",
        "summary": "PromQL query is true for prometheus_target with "
        "{namespace=serving, job=scorer}",
        "resource": {
            "type": "prometheus_target",
            "labels": {"project_id": PROJECT, "namespace": "serving", "job": "scorer"},
        },
        "policy_name": "scorer-error-ratio",
        "policy_user_labels": {},
        "condition_name": "error ratio above 5%",
        "condition": {
            "name": f"projects/{PROJECT}/alertPolicies/777/conditions/888",
            "displayName": "error ratio above 5%",
            "conditionPrometheusQueryLanguage": {
                "query": 'sum(rate(http_requests_total{code=~"5.."}[5m])) / '
                "sum(rate(http_requests_total[5m])) > 0.05",
                "duration": "300s",
                "evaluationInterval": "60s",
            },
        },
        "documentation": {"content": "", "mime_type": "text/markdown"},
    },
    "version": "1.2",
}

# [DOC] + [COND] A SQL condition's incident (Log Analytics): a row-count test, no metric.
SQL_OPEN: dict[str, Any] = {
    "incident": {
        "incident_id": "0.sq1000000001",
        "scoping_project_id": PROJECT,
        "scoping_project_number": 12345,
        "url": f"https://console.cloud.google.com/monitoring/alerting/incidents/0.sq1000000001?project={PROJECT}",
        "severity": "warning",
        "started_at": 1780014400,
        "ended_at": None,
        "state": "open",
        "summary": "SQL query returned 12 rows, more than the threshold of 0 rows.",
        "resource": {"type": "global", "labels": {"project_id": PROJECT}},
        "policy_name": "scoring-errors-sql",
        "condition_name": "scoring errors in the last hour",
        "condition": {
            "name": f"projects/{PROJECT}/alertPolicies/999/conditions/1000",
            "displayName": "scoring errors in the last hour",
            "conditionSql": {
                "query": "SELECT * FROM `internal-project.global._Default._AllLogs` "
                "WHERE severity = 'ERROR'",
                "minutes": {"periodicity": 60},
                "rowCountTest": {"comparison": "COMPARISON_GT", "threshold": "0"},
            },
        },
    },
    "version": "1.2",
}

# [TEST] The console's test notification, verbatim.
TEST_NOTIFICATION: dict[str, Any] = {
    "version": "test",
    "incident": {
        "incident_id": "12345",
        "scoping_project_id": "12345",
        "scoping_project_number": 12345,
        "url": "http://www.example.com",
        "started_at": 0,
        "ended_at": 0,
        "state": "OPEN",
        "summary": "Test Incident",
        "apigee_url": "http://www.example.com",
        "observed_value": "1.0",
        "resource": {"type": "example_resource", "labels": {"example": "label"}},
        "resource_type_display_name": "Example Resource Type",
        "resource_id": "12345",
        "resource_display_name": "Example Resource",
        "resource_name": "projects/12345/example_resources/12345",
        "metric": {
            "type": "test.googleapis.com/metric",
            "displayName": "Test Metric",
            "labels": {"example": "label"},
        },
        "metadata": {"system_labels": {"example": "label"}, "user_labels": {"example": "label"}},
        "policy_name": "projects/12345/alertPolicies/12345",
        "policy_user_labels": {"example": "label"},
        "documentation": "Test documentation",
        "condition": {
            "name": "projects/12345/alertPolicies/12345/conditions/12345",
            "displayName": "Example condition",
            "conditionThreshold": {
                "filter": 'metric.type="test.googleapis.com/metric" resource.type="example_resource"',
                "comparison": "COMPARISON_GT",
                "thresholdValue": 0.5,
                "duration": "0s",
                "trigger": {"count": 1},
            },
        },
        "condition_name": "Example condition",
        "threshold_value": "0.5",
    },
}


def opened(payload: dict[str, Any]) -> dict[str, Any]:
    """The open notification of the same incident ([DOC]: one incident_id, state "open",
    ended_at null)."""
    out = copy.deepcopy(payload)
    out["incident"].update(state="open", ended_at=None)
    return out


def closed(payload: dict[str, Any], *, after: int = 600) -> dict[str, Any]:
    """The close notification of the same incident ([DOC]: same incident_id, state "closed",
    ended_at set, a "returned to normal" summary)."""
    out = copy.deepcopy(payload)
    inc = out["incident"]
    inc.update(state="closed", ended_at=int(inc["started_at"]) + after)
    inc["summary"] = f"{inc.get('condition_name', 'condition')} returned to normal."
    return out


#: One open payload per documented condition kind, and what the router must call that kind.
BY_KIND: dict[str, tuple[dict[str, Any], str]] = {
    "threshold": (THRESHOLD_OPEN, "threshold"),
    "documented-example": (opened(DOCUMENTED_EXAMPLE), "threshold"),
    "absence": (ABSENCE_OPEN, "absence"),
    "log-match": (LOG_MATCH_OPEN, "log_match"),
    "uptime": (UPTIME_OPEN, "uptime"),
    "promql": (PROMQL_OPEN, "promql"),
    "sql": (SQL_OPEN, "sql"),
}
