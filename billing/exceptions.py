"""Error codes of the billing catalogue's endpoints (seed 004)."""

from config.api.errors import Forbidden


class LicenseRequired(Forbidden):
    code = "LICENSE.REQUIRED"
    message = "Your account lacks the Metered Products or Subscription license."
