"""URL routes: the admin, the REST API and its OpenAPI schema and docs, metrics."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from shop.apis import AuthTokenCreateApi, HealthApi
from shop.observability.metrics import metrics

api_patterns = [
    path("", include("orders.urls")),
    path("", include("sagas.urls")),
    path("", include("inventory.urls")),
    path("", include("payments.urls")),
    path("auth/token/", AuthTokenCreateApi.as_view(), name="auth-token"),
    path("health/", HealthApi.as_view(), name="health"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
]

# Answers in the API's error shape under /api/, Django's own pages elsewhere.
handler400 = "shop.exceptions.bad_request"
handler404 = "shop.exceptions.not_found"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include(api_patterns)),
    path("metrics", metrics, name="metrics"),
]
