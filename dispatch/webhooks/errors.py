from dispatch.kernel.errors import Conflict


class WebhookDisabled(Conflict):
    """Redelivery to a webhook that is disabled: enable it first."""

    code = "webhook_disabled"
    title = "The webhook is disabled"
