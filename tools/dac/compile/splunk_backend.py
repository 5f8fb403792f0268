"""pySigma's Splunk backend with two silent mis-translations fixed.

1. The stock backend moves a regular expression that is not under an OR out of the boolean
   expression into a trailing `| regex` command. Under a NOT that changes the meaning:
   `sel and not (debugger and not re)` came out as `NOT debugger | regex field!="re"`,
   i.e. `not debugger and not re`. Here every regex goes through the rex/eval form the backend
   already uses under OR (`rex` into a match field, `eval XCondition=true/false`), and the
   condition keeps its boolean structure.
2. With such rex/eval prefixes the stock finalizer hoists leading `field=value` terms in front of
   the pipeline, even when they belong to an OR (it produced `Image="*/x" | rex … | search OR …`,
   invalid SPL). Here the query is left as converted; the target pipeline puts the base search
   (index/sourcetype) in front.
"""
from __future__ import annotations

from sigma.backends.splunk import SplunkBackend
from sigma.backends.splunk.splunk import SplunkDeferredORRegularExpression
from sigma.conditions import ConditionFieldEqualsValueExpression
from sigma.types import SigmaString


class DacSplunkBackend(SplunkBackend):
    name = "Splunk SPL (dac: boolean-safe regular expressions)"

    def convert_condition_field_eq_val_re(self, cond: ConditionFieldEqualsValueExpression, state):
        SplunkDeferredORRegularExpression(
            state,
            cond.field,
            super(SplunkBackend, self).convert_condition_field_eq_val_re(cond, state),
        ).postprocess(None, cond)
        matched = ConditionFieldEqualsValueExpression(
            SplunkDeferredORRegularExpression.get_field_condition(cond.field), SigmaString("true")
        )
        return self.convert_condition_field_eq_val_str(matched, state)

    def finalize_query_default(self, rule, query, index, state):
        return query
