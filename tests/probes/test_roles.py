import pytest
from django.contrib.auth.models import Group, User

from probes.roles import ADMIN, OPERATOR, VIEWER, ensure_roles, role_of


@pytest.mark.django_db
def test_it_gives_viewers_only_view_permissions() -> None:
    ensure_roles()
    codenames = set(Group.objects.get(name=VIEWER).permissions.values_list("codename", flat=True))
    assert "view_gpusample" in codenames
    assert all(codename.startswith("view_") for codename in codenames)


@pytest.mark.django_db
def test_it_lets_operators_import_traces_but_not_edit_nodes() -> None:
    ensure_roles()
    codenames = set(Group.objects.get(name=OPERATOR).permissions.values_list("codename", flat=True))
    assert "import_trace" in codenames
    assert "change_node" not in codenames


@pytest.mark.django_db
def test_it_gives_admins_every_permission_of_our_apps() -> None:
    ensure_roles()
    codenames = set(Group.objects.get(name=ADMIN).permissions.values_list("codename", flat=True))
    assert {"change_node", "delete_pricesheet", "import_trace"} <= codenames


@pytest.mark.django_db
def test_it_tells_the_strongest_role(alice: User, bob: User, carol: User) -> None:
    assert (role_of(alice), role_of(bob), role_of(carol)) == (ADMIN, OPERATOR, VIEWER)
    bob.groups.add(Group.objects.get(name=ADMIN))
    assert role_of(bob) == ADMIN
