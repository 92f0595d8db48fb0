from dispatch.kernel.errors import Conflict, Forbidden, InvalidInput, NotFound, RateLimited


class TicketNotFound(NotFound):
    code = "ticket_not_found"
    title = "No such ticket"


class InvalidTransition(Conflict):
    code = "invalid_transition"
    title = "Not allowed in the ticket's current state"


class AlreadyTaken(Conflict):
    code = "already_taken"
    title = "Another technician already took this ticket"


class LimitReached(Conflict):
    code = "limit_reached"
    title = "You already hold as many active tickets as you may"


class LocationUnknown(Conflict):
    code = "location_unknown"
    title = "Your position is not known yet"


class NotOnDuty(Conflict):
    code = "not_on_duty"
    title = "Go on duty to grab tickets"


class GrabbingTooFast(RateLimited):
    code = "too_many_grabs"
    title = "Too many grabs in a short time"


class UrgedRecently(RateLimited):
    code = "urged_recently"
    title = "This ticket was urged a moment ago"


class ConcurrentChange(Conflict):
    code = "concurrent_change"
    title = "The ticket changed meanwhile; reload and retry"


class IdempotencyKeyReused(InvalidInput):
    code = "idempotency_key_reused"
    title = "This Idempotency-Key was used for a different request"


class NotYourTicket(Forbidden):
    code = "not_your_ticket"
    title = "This ticket is held by someone else"


class TooLarge(InvalidInput):
    status = 413
    code = "too_large"
    title = "The file is larger than allowed"


class UnsupportedMedia(InvalidInput):
    status = 415
    code = "unsupported_media_type"
    title = "Only photos, voice and video can be attached"


class AttachmentBudgetSpent(Conflict):
    code = "attachment_budget_exceeded"
    title = "The ticket holds as many attachments as it may"


class NotDeclinable(Conflict):
    code = "not_declinable"
    title = "Only a system assignment may be declined, and only before arrival within the decline window"
