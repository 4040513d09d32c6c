"""The project's URL configuration: what a path no view serves answers."""

import pytest
from django.contrib.auth.models import User
from django.test import Client

pytestmark = pytest.mark.django_db


def test_it_answers_an_unknown_api_path_in_the_apis_error_shape(carol: User) -> None:
    # A non-integer id matches no route: API clients got Django's HTML 404 page
    client = Client()
    client.force_login(carol)
    response = client.post("/api/v1/rollouts/1e-05/pause/", {}, content_type="application/json")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "errors": [
            {"field": "(path)", "message": "no API resource at /api/v1/rollouts/1e-05/pause/"}
        ]
    }


def test_it_answers_an_unknown_page_with_the_404_page(carol: User) -> None:
    client = Client()
    client.force_login(carol)
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
