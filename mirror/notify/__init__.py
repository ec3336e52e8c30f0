"""The notification seam: outbox delivery, and one module per channel (webhook, Slack, email)."""
