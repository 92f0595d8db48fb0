from dispatch.kernel.errors import Forbidden


class NotATechnician(Forbidden):
    code = "not_a_technician"
    title = "Only a technician may do this"
