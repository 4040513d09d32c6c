"""Agent authentication: `Authorization: Bearer <token>`, looked up by its SHA-256 digest."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from probes.models import Node


class NodeAgent:
    """The principal of an agent request (request.user); the Node is request.auth."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False

    def __init__(self, node: Node) -> None:
        self.node = node
        self.pk = None

    @property
    def username(self) -> str:
        return f"agent:{self.node}"  # reads the node's cluster: only when asked

    def __str__(self) -> str:
        return self.username


_BY_TOKEN = f'SELECT * FROM "{Node._meta.db_table}" WHERE agent_token_hash = %s'


class NodeTokenAuthentication(authentication.BaseAuthentication):
    """Authenticate a node agent by its bearer token (stored only as a digest)."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[NodeAgent, Node] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Authorization: expected 'Bearer <token>'")
        try:
            token = header[1].decode("ascii")
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed("Authorization: token is not ASCII") from exc
        # Raw SQL: compiling the same lookup through the ORM cost ~1 ms per request, the
        # largest fixed cost of an ingest batch (agents push >= 100k samples/s).
        digest = Node.hash_token(token)
        found = Node.objects.raw(_BY_TOKEN, [digest])
        node = next(iter(found), None)
        if node is None:
            raise exceptions.AuthenticationFailed("Authorization: unknown or revoked agent token")
        return NodeAgent(node), node

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="agent"'


class IsNodeAgent(permissions.BasePermission):
    message = "an agent token is required (Authorization: Bearer <token>)"

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, Node)


class NodeTokenScheme(OpenApiAuthenticationExtension):
    target_class = "probes.auth.NodeTokenAuthentication"
    name = "agentToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "Node agent token from `manage.py register_node` (shown once)",
        }
