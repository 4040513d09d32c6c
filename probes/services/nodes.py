"""Register nodes and issue their agent tokens (the token is returned once, never stored)."""

from __future__ import annotations

from collections.abc import Mapping

from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import transaction

from probes.models import Cluster, Node


class NodeRegistrationError(ValueError):
    """The registration request is invalid (the message names the argument)."""


def node_register(
    *,
    cluster_name: str,
    hostname: str,
    labels: Mapping[str, str] | None = None,
    rotate: bool = False,
) -> tuple[Node, str]:
    """Create `hostname` in `cluster_name` (created if missing) and return (node, token).

    An existing node gets a new token only with `rotate=True`; its old token stops working.
    """
    if not hostname or len(hostname) > 253:
        raise NodeRegistrationError("hostname: 1-253 characters")
    try:
        validate_slug(cluster_name)
    except ValidationError as exc:
        raise NodeRegistrationError(
            f"cluster: {cluster_name!r} is not a slug (letters, digits, - and _)"
        ) from exc
    with transaction.atomic():
        cluster, _created = Cluster.objects.get_or_create(name=cluster_name)
        node = Node.objects.select_for_update().filter(cluster=cluster, hostname=hostname).first()
        if node is not None and not rotate:
            raise NodeRegistrationError(
                f"hostname: {cluster_name}/{hostname} is already registered; "
                "pass --rotate to issue a new token (the old one stops working)"
            )
        if node is None:
            node = Node(cluster=cluster, hostname=hostname)
        if labels:
            node.labels = {**node.labels, **labels}
        token = node.issue_token()
        node.save()
    return node, token


def node_token_rotate(*, node: Node) -> str:
    """Issue a new token for `node` (the old one stops working) and return it."""
    token = node.issue_token()
    node.save(update_fields=["agent_token_hash"])
    return token
