from dispatch.kernel.errors import Unauthorized


class BadCredentials(Unauthorized):
    code = "bad_credentials"
    title = "Wrong username or password"
