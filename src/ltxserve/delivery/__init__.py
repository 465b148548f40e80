"""Results pushed to the client's systems: signed webhooks and uploadEndpoint PUTs, retried."""

from ltxserve.delivery.deliverer import Deliverer, backoff_delay, webhook_body

__all__ = ["Deliverer", "backoff_delay", "webhook_body"]
