from __future__ import annotations

import dagster as dg

from stedi_assets.privacy import PrivacyPolicy
from stedi_assets.settings import DEFAULT_RETENTION_HOURS, DEVELOPMENT_SUBJECT_KEY, ConsentPolicy


class PrivacyResource(dg.ConfigurableResource):
    """The privacy settings as Dagster config: the subject key reaches it as a dg.EnvVar, so the
    UI shows the variable's name, never its value. Steps get the PrivacyPolicy."""

    consent_policy: ConsentPolicy = ConsentPolicy.ANY
    subject_key: str = DEVELOPMENT_SUBJECT_KEY
    retention_hours: int = DEFAULT_RETENTION_HOURS

    def create_resource(self, context: dg.InitResourceContext) -> PrivacyPolicy:
        return PrivacyPolicy(self.consent_policy, self.subject_key, self.retention_hours)
