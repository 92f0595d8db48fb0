"""Every model module, imported so that the metadata Alembic compares against is complete."""

import dispatch.accounts.models
import dispatch.audit.models
import dispatch.notices.models
import dispatch.tickets.models
import dispatch.webhooks.models
import geo.models
import technicians.models
import workload.models
from dispatch.kernel.db import Base

MODEL_MODULES = (dispatch.accounts.models, dispatch.audit.models, dispatch.notices.models, dispatch.tickets.models,
                 dispatch.webhooks.models, geo.models, technicians.models, workload.models)
target_metadata = Base.metadata
