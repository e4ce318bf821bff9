"""Alert delivery through Airflow notifiers: email (SMTP), Slack (incoming webhook), a generic JSON webhook.

Each channel is an Airflow connection, so it is configured like any other (``AIRFLOW_CONN_*`` or the UI):

- ``salespulse_smtp``: ``smtp://user:password@host:587?from_email=...&to=a@x.com,b@x.com``
  (extras ``disable_tls`` / ``disable_ssl`` as the SMTP provider reads them);
- ``salespulse_slack``: the Slack incoming-webhook URL, e.g. ``https://hooks.slack.com/services/...``;
- ``salespulse_webhook``: any URL that accepts a JSON POST.

A channel whose connection is not defined is skipped. A channel that fails to deliver is logged as an
error and does not hide the outcome the alert is about.
"""

from __future__ import annotations

import html
import json
import logging
import urllib.request
from typing import Any

from airflow.providers.smtp.notifications.smtp import SmtpNotifier
from airflow.sdk import BaseNotifier, Connection
from airflow.sdk.exceptions import AirflowNotFoundException

from salespulse.alerts import Alert

log = logging.getLogger(__name__)

SMTP_CONN_ID = "salespulse_smtp"
SLACK_CONN_ID = "salespulse_slack"
WEBHOOK_CONN_ID = "salespulse_webhook"


class WebhookNotifier(BaseNotifier):
    """POST an alert as JSON: the whole structured payload, or Slack's ``{"text": ...}`` shape."""

    template_fields = ()

    def __init__(self, *, conn_id: str, alert: Alert, slack: bool = False, timeout: float = 10.0):
        super().__init__()
        self.conn_id = conn_id
        self.alert = alert
        self.slack = slack
        self.timeout = timeout

    def body(self) -> dict[str, Any]:
        if self.slack:
            return {"text": f"*{self.alert.subject}*\n```\n{self.alert.text}\n```"}
        return {"subject": self.alert.subject, "text": self.alert.text, **self.alert.payload}

    def notify(self, context: Any) -> None:
        url = Connection.get(self.conn_id).get_uri()
        request = urllib.request.Request(
            url,
            data=json.dumps(self.body(), default=str, ensure_ascii=False).encode("utf-8"),
            headers={"Content-Type": "application/json; charset=utf-8"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            if not 200 <= response.status < 300:
                raise RuntimeError(f"{self.conn_id} answered HTTP {response.status}")


def email_notifier(alert: Alert) -> SmtpNotifier:
    """The SMTP provider's notifier, with recipients from the connection's ``to`` extra."""
    extra = Connection.get(SMTP_CONN_ID).extra_dejson
    recipients = [r.strip() for r in str(extra.get("to", "")).split(",") if r.strip()]
    if not recipients:
        raise ValueError(f"connection {SMTP_CONN_ID} has no 'to' extra naming the recipients")
    return SmtpNotifier(
        to=recipients,
        from_email=extra.get("from_email"),
        subject=alert.subject,
        html_content=f"<pre>{html.escape(alert.text)}</pre>",
        smtp_conn_id=SMTP_CONN_ID,
    )


def _configured(conn_id: str) -> bool:
    try:
        Connection.get(conn_id)
    except AirflowNotFoundException:
        return False
    return True


def send_alert(alert: Alert, context: Any) -> list[str]:
    """Deliver one alert to every configured channel; returns the channels it reached."""
    builders = {
        SMTP_CONN_ID: lambda: email_notifier(alert),
        SLACK_CONN_ID: lambda: WebhookNotifier(conn_id=SLACK_CONN_ID, alert=alert, slack=True),
        WEBHOOK_CONN_ID: lambda: WebhookNotifier(conn_id=WEBHOOK_CONN_ID, alert=alert),
    }
    reached = []
    for conn_id, build in builders.items():
        if not _configured(conn_id):
            continue
        try:
            build().notify(context)
            reached.append(conn_id)
        except Exception:
            log.exception("alert %r could not be delivered through %s", alert.subject, conn_id)
    log.warning(
        "%s\n%s\n(delivered to: %s)", alert.subject, alert.text, ", ".join(reached) or "no channel configured"
    )
    return reached
