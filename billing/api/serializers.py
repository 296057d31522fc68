"""The shapes of seed 004's meter subscription lookups (documentation: the views answer dicts)."""

from rest_framework import serializers


class PriceSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    unitAmount = serializers.FloatField()
    currency = serializers.CharField()


class SubscriptionProductSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    prices = PriceSerializer(many=True)


class SubscriptionSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    customerId = serializers.CharField()
    status = serializers.ChoiceField(choices=["active"])
    createdAt = serializers.CharField()
    products = SubscriptionProductSerializer(many=True)


class MeterSubscriptionsSerializer(serializers.Serializer):
    """Seed 004's answer: the meter and the subscriptions (with their products) that use it."""

    meterId = serializers.UUIDField()
    meterName = serializers.CharField()
    subscriptions = SubscriptionSerializer(many=True)
