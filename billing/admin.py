"""The billing catalogue in the admin: products with their prices, and subscriptions. Saves and
deletes go through ``billing.services``."""

from __future__ import annotations

from django.contrib import admin, messages

from accounts.admin_scoping import TRIMMED_DECIMALS, AccountScopedAdmin, user_account_id
from billing import services
from billing.models import Price, Product, Subscription
from metering.models import MeterType


class CatalogueAdmin(AccountScopedAdmin):
    """Saves and deletes through the billing catalogue services."""

    def save_model(self, request, obj, form, change):
        if obj.account_id is None:
            account = self.account_for_request(request)
            obj.account_id = account.pk if account else None
        services.catalogue_save(instance=obj)

    def delete_model(self, request, obj):
        services.catalogue_delete(instance=obj)

    def delete_queryset(self, request, queryset):
        for instance in queryset:
            services.catalogue_delete(instance=instance)


class PriceInline(admin.TabularInline):
    model = Price
    fields = ["meter_type", "unit_amount", "currency"]
    formfield_overrides = TRIMMED_DECIMALS
    extra = 0

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        account_id = user_account_id(request)
        if db_field.name == "meter_type" and account_id is not None:
            kwargs["queryset"] = MeterType.objects.filter(account_id=account_id)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(Product)
class ProductAdmin(CatalogueAdmin):
    list_display = ["name", "description", "price_count", "created_at"]
    list_filter = ["account"]
    search_fields = ["name", "description"]
    ordering = ["name"]
    inlines = [PriceInline]

    @admin.display(description="prices")
    def price_count(self, product):
        return product.prices.count()

    def save_formset(self, request, form, formset, change):
        prices = formset.save(commit=False)
        for price in prices:
            price.account_id = form.instance.account_id
            services.catalogue_save(instance=price)
        for price in formset.deleted_objects:
            services.catalogue_delete(instance=price)


@admin.register(Price)
class PriceAdmin(CatalogueAdmin):
    list_display = ["product", "meter_type", "unit_amount", "currency", "created_at"]
    list_filter = [("meter_type", admin.RelatedOnlyFieldListFilter), "currency", "account"]
    list_select_related = ["product", "meter_type"]
    search_fields = ["product__name", "meter_type__name", "meter_type__api_name"]
    ordering = ["product__name", "created_at"]


@admin.register(Subscription)
class SubscriptionAdmin(CatalogueAdmin):
    list_display = ["customer_id", "status", "product_names", "created_at", "updated_at"]
    list_filter = ["status", "account"]
    search_fields = ["=customer_id", "products__name"]
    ordering = ["-created_at"]
    filter_horizontal = ["products"]
    actions = ["pause", "resume"]

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        account_id = user_account_id(request)
        if db_field.name == "products" and account_id is not None:
            kwargs["queryset"] = Product.objects.filter(account_id=account_id)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_related(self, request, form, formsets, change):
        services.subscription_products_set(
            subscription=form.instance, products=list(form.cleaned_data["products"])
        )

    @admin.display(description="products")
    def product_names(self, subscription):
        return ", ".join(product.name for product in subscription.products.all())

    @admin.action(description="Pause selected subscriptions")
    def pause(self, request, queryset):
        count = services.subscriptions_set_status(
            subscriptions=list(queryset), status=Subscription.Status.PAUSED
        )
        messages.success(request, f"{count} subscription(s) paused.")

    @admin.action(description="Resume selected subscriptions")
    def resume(self, request, queryset):
        count = services.subscriptions_set_status(
            subscriptions=list(queryset), status=Subscription.Status.ACTIVE
        )
        messages.success(request, f"{count} subscription(s) resumed.")
