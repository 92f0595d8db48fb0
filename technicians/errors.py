from dispatch.kernel import errors
from dispatch.kernel.errors import Conflict, Forbidden


class NotATechnician(Forbidden):
    code = "not_a_technician"
    title = "Only a technician may do this"


class OffDuty(Conflict):
    code = "off_duty"
    title = "You are off duty: positions are kept only while you work"


class OffShift(Conflict):
    code = "off_shift"
    title = "Outside your roster window: positions are kept only while you work"


class RateLimited(errors.RateLimited):
    title = "Too many location pings"


class NoBranch(Conflict):
    code = "no_branch"
    title = "Technicians bound to the whole company are assigned by dispatchers, not tracked per branch"
