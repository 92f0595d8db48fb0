from dispatch.kernel.errors import Conflict


class PeriodClosed(Conflict):
    code = "period_closed"
    title = "This pay period is closed"


class PeriodNotOver(Conflict):
    code = "period_not_over"
    title = "A pay period can be closed only after it has ended"
