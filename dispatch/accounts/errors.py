from dispatch.kernel.errors import Forbidden, RateLimited, Unauthorized


class BadCredentials(Unauthorized):
    code = "bad_credentials"
    title = "Wrong username or password"


class AccountLocked(Forbidden):
    code = "account_locked"
    title = "Account locked"


class TooManyAttempts(RateLimited):
    title = "Too many failed log-ins"

    def __init__(self, *, retry_after: int) -> None:
        super().__init__(f"too many failed log-ins; try again in {retry_after} s", retry_after=retry_after)
