"""Webhook delivery: per-call ordering, retries with backoff, optional signing, a delivery log."""

from ivrsim.webhooks.dispatcher import SIGNATURE_HEADER, WebhookDispatcher, WebhookSettings, sign

__all__ = ["SIGNATURE_HEADER", "WebhookDispatcher", "WebhookSettings", "sign"]
