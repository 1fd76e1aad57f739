"""Saga routes, under /api/."""

from django.urls import path

from sagas.apis import SagaCancelApi, SagaDetailApi, SagaListApi, SagaRetryApi

app_name = "sagas"

urlpatterns = [
    path("sagas/", SagaListApi.as_view(), name="list"),
    path("sagas/<id:saga_id>/", SagaDetailApi.as_view(), name="detail"),
    path("sagas/<id:saga_id>/retry/", SagaRetryApi.as_view(), name="retry"),
    path("sagas/<id:saga_id>/cancel/", SagaCancelApi.as_view(), name="cancel"),
]
