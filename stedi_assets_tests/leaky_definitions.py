"""A deliberately broken deployment for the tests: customer_trusted forgets the consent
filter, the kind of bug the blocking checks exist to stop. Loaded with `dagster -f`."""

from stedi_assets.trusted import rules

LEAK = "WHERE k.verdict = 'consented'"
assert LEAK in rules.CUSTOMER_TRUSTED, "the sabotage no longer applies: update it with the rule"
rules.CUSTOMER_TRUSTED = rules.CUSTOMER_TRUSTED.replace(LEAK, "WHERE TRUE")

from stedi_assets.definitions import defs  # noqa: E402  (after the sabotage, on purpose)

__all__ = ["defs"]
