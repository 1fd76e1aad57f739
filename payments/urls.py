"""Payments routes, under /api/."""

from django.urls import path

from payments.apis import (
    AccountDetailApi,
    AccountMeApi,
    PaymentMethodDeactivateApi,
    PaymentMethodListApi,
)

app_name = "payments"

urlpatterns = [
    path("accounts/me/", AccountMeApi.as_view(), name="account-me"),
    path("accounts/<id:account_id>/", AccountDetailApi.as_view(), name="account"),
    path("payment-methods/", PaymentMethodListApi.as_view(), name="method-list"),
    path(
        "payment-methods/<id:method_id>/deactivate/",
        PaymentMethodDeactivateApi.as_view(),
        name="method-deactivate",
    ),
]
