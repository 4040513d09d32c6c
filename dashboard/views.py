"""Dashboard pages; each view checks the role, asks one selector, renders one template."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from probes.models import Cluster


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/home.html", {"clusters": Cluster.objects.all()})
