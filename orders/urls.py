"""Orders routes, under /api/."""

from django.urls import path

from orders.apis import OrderCreateApi, OrderDetailApi, OrderListApi
from shop.routing import method_view

app_name = "orders"

urlpatterns = [
    path("orders/", method_view(get=OrderListApi, post=OrderCreateApi), name="list"),
    path("orders/<id:order_id>/", OrderDetailApi.as_view(), name="detail"),
]
