"""Saga routes, under /api/."""

from django.urls import path

from sagas.apis import SagaCancelApi, SagaDetailApi, SagaListApi, SagaRetryApi

app_name = "sagas"

urlpatterns = [
    path("sagas/", SagaListApi.as_view(), name="list"),
    path("sagas/<int:saga_id>/", SagaDetailApi.as_view(), name="detail"),
    path("sagas/<int:saga_id>/retry/", SagaRetryApi.as_view(), name="retry"),
    path("sagas/<int:saga_id>/cancel/", SagaCancelApi.as_view(), name="cancel"),
]
