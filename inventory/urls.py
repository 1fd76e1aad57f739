"""Inventory routes, under /api/."""

from django.urls import path, register_converter

from inventory.apis import ProductDetailApi, ProductListApi


class SkuConverter:
    """1-64 characters, no slash and no NUL (which PostgreSQL cannot compare)."""

    regex = r"[^/\x00]{1,64}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(SkuConverter, "sku")

app_name = "inventory"

urlpatterns = [
    path("products/", ProductListApi.as_view(), name="product-list"),
    path("products/<sku:sku>/", ProductDetailApi.as_view(), name="product-detail"),
]
