"""What the WeChat layer refuses, each with its status and stable code."""

from dispatch.kernel.errors import (
    BadUpstreamAnswer,
    Conflict,
    DomainError,
    Forbidden,
    ServiceUnavailable,
    UpstreamUnreachable,
)


class WechatOff(ServiceUnavailable):
    code = "wechat_off"
    title = "No WeChat official account is configured"


class WechatUnreachable(UpstreamUnreachable):
    code = "wechat_unreachable"
    title = "The WeChat API cannot be reached"


class WechatBadAnswer(BadUpstreamAnswer):
    code = "wechat_bad_answer"
    title = "The WeChat API answered with an error or garbage"


class BadSignature(Forbidden):
    code = "bad_signature"
    title = "The WeChat signature does not match"


class StaleDelivery(Forbidden):
    code = "stale_delivery"
    title = "The delivery's timestamp is outside the accepted window"


class BodyTooLarge(DomainError):
    status = 413
    code = "body_too_large"
    title = "The delivery is larger than any WeChat message"


class MalformedDelivery(DomainError):
    status = 400
    code = "malformed_delivery"
    title = "The delivery is not a well-formed WeChat message"


class BadOAuthState(Forbidden):
    code = "bad_oauth_state"
    title = "The sign-in was not started here, or has expired"


class AlreadyBound(Conflict):
    code = "already_bound"
    title = "This WeChat user is bound to someone else"
