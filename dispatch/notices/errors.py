"""Staff notices' domain errors (rendered as problem JSON by the kernel's one handler)."""

from dispatch.kernel.errors import Conflict


class NothingToSend(Conflict):
    code = "no_notice_channel"
    title = "No channel to send through"
