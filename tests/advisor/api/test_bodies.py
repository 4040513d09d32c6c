"""Request bodies: a JSON object of known fields, or a 400 naming the body or the field."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from advisor.models import Assessment, BenchmarkJob

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/api/v1/assessments/", "/api/v1/benchmarks/"])
@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ("{", "(body)", "not valid JSON: JSON parse error - Expecting property name enclosed in "
                        "double quotes: line 1 column 2 (char 1)"),
        ("[1]", "(body)", "expected a JSON object"),
        ('"x"', "(body)", "expected a JSON object"),
        ('{"zz": 1, "yy": 2}', "yy", "unknown field"),
    ],
)  # fmt: skip
def test_it_names_the_body_or_the_unknown_field(
    bob: User, path: str, body: str, field: str, message: str
) -> None:
    client = Client()
    client.force_login(bob)
    response = client.post(path, body, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"errors": [{"field": field, "message": message}]}
    assert not Assessment.objects.exists()
    assert not BenchmarkJob.objects.exists()
