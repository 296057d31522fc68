"""The metering app's error codes. ``config.api.errors`` turns them into the JSON error body."""

from config.api.errors import Conflict, NotFound, ValidationFailed


class MeterTypeNotFound(NotFound):
    code = "METER_TYPE_NOT_FOUND"
    message = "Meter type not found."


class MeterNotFound(NotFound):
    code = "METER_NOT_FOUND"
    message = "Meter not found."


class MeterTypeNameExists(Conflict):
    code = "METER_TYPE_NAME_EXISTS"
    message = "A meter type with this name exists in the account."


class MeterTypeExternalRefExists(Conflict):
    code = "METER_TYPE_EXTERNAL_REF_EXISTS"
    message = "A meter type with this externalRef exists in the account."


class MeterTypeApiNameExists(Conflict):
    code = "METER_TYPE_API_NAME_EXISTS"
    message = "A meter type with this apiName exists in the account."


class MeterTypeInUse(Conflict):
    code = "METER_TYPE_IN_USE"
    message = "The meter type has meters; delete them first."


class MeterExists(Conflict):
    code = "METER_EXISTS"
    message = "A meter for this meter type, meterKey and userId exists."


class AggregationImmutable(ValidationFailed):
    code = "AGGREGATION_IMMUTABLE"
    message = "The aggregation of a meter type cannot be changed."


class FilteringRuleNotFound(NotFound):
    code = "FILTERING_RULE_NOT_FOUND"
    message = "No filtering rule has this ruleId."
