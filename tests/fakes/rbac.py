"""Kubernetes RBAC, as the API server decides it, for the fakes: the documented Role/ClusterRole set is loaded
from ``docs/deployments.md`` (its ``runner-cache-rbac`` YAML blocks), so docs and fakes cannot disagree.

What is modelled (``plugin/pkg/auth/authorizer/rbac/rbac.go``, ``pkg/registry/rbac/validation/rule.go``):
- a request is ``(verb, group, resource, subresource, namespace, name)`` as ``requestinfo.go`` derives it:
  ``GET /api/v1/namespaces/foo`` has namespace ``foo``; ``POST /api/v1/namespaces`` has none (cluster scope);
- ClusterRoleBindings grant everywhere; RoleBindings (to a Role or a ClusterRole) only in their namespace;
- ``resourceNames`` never match a create or a list (no name);
- escalation: creating/updating a Role needs every permission it grants (or ``escalate`` on roles); a
  RoleBinding needs the bound role's permissions (or ``bind`` on that role).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DOC = Path(__file__).resolve().parents[2] / "docs" / "deployments.md"
MARK = "# runner-cache-rbac:"
SUBJECT = "system:serviceaccount:runner-cache:runner-cache"
_BLOCK = re.compile(r"```yaml\n(" + re.escape(MARK) + r".*?)```", re.S)


@dataclass(frozen=True)
class Request:
    verb: str
    group: str
    resource: str
    namespace: str = ""
    name: str = ""
    subresource: str = ""

    def words(self, user: str) -> str:
        """The API server's 403 message for this request (``authorization/rbac`` forbidden text)."""
        what = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        qualified = f"{self.resource}.{self.group}" if self.group else self.resource
        head = f'{qualified} "{self.name}" is forbidden' if self.name else f"{qualified} is forbidden"
        where = f'in the namespace "{self.namespace}"' if self.namespace else "at the cluster scope"
        return f'{head}: User "{user}" cannot {self.verb} resource "{what}" in API group "{self.group}" {where}'


@dataclass
class Rbac:
    """The Roles, ClusterRoles and bindings of some documented features, and the subject they bind."""

    objects: list[dict] = field(default_factory=list)
    user: str = SUBJECT

    @classmethod
    def documented(cls, *features: str, doc: Path = DOC, user: str = SUBJECT) -> Rbac:
        """The objects of the named features (all of them when none is named), read from the doc."""
        found: dict[str, list[dict]] = {}
        for block in _BLOCK.findall(doc.read_text(encoding="utf-8")):
            feature = block.splitlines()[0].removeprefix(MARK).strip()
            found.setdefault(feature, []).extend(obj for obj in yaml.safe_load_all(block) if obj)
        unknown = set(features) - set(found)
        if unknown:
            raise KeyError(f"{DOC.name} documents no RBAC feature {sorted(unknown)} (it has {sorted(found)})")
        return cls([obj for name in (features or tuple(found)) for obj in found[name]], user)

    # --- the subject's rules ---------------------------------------------------------------------------------

    def _bound(self, binding: dict) -> bool:
        return any(
            (
                s.get("kind") == "ServiceAccount"
                and f"system:serviceaccount:{s.get('namespace')}:{s.get('name')}" == self.user
            )
            or (s.get("kind") == "User" and s.get("name") == self.user)
            for s in binding.get("subjects") or []
        )

    def _role(self, kind: str, name: str, namespace: str) -> dict | None:
        return next(
            (
                o
                for o in self.objects
                if o["kind"] == kind
                and o["metadata"]["name"] == name
                and (kind == "ClusterRole" or o["metadata"].get("namespace") == namespace)
            ),
            None,
        )

    def rules_for(self, namespace: str) -> list[dict]:
        """Every rule that applies to the subject for a request in ``namespace`` ("" = cluster scope)."""
        rules: list[dict] = []
        for binding in self.objects:
            if binding["kind"] not in {"RoleBinding", "ClusterRoleBinding"} or not self._bound(binding):
                continue
            if binding["kind"] == "RoleBinding" and binding["metadata"].get("namespace") != namespace:
                continue
            ref = binding["roleRef"]
            role = self._role(ref["kind"], ref["name"], binding["metadata"].get("namespace", ""))
            rules += (role or {}).get("rules") or []
        return rules

    # --- decisions -------------------------------------------------------------------------------------------

    @staticmethod
    def _matches(rule: dict, request: Request) -> bool:
        resource = f"{request.resource}/{request.subresource}" if request.subresource else request.resource
        names = rule.get("resourceNames") or []
        return (
            _has(rule.get("apiGroups"), request.group)
            and _has(rule.get("resources"), resource)
            and _has(rule.get("verbs"), request.verb)
            and (not names or (request.name != "" and request.name in names))
        )

    def allows(self, request: Request) -> bool:
        return any(self._matches(rule, request) for rule in self.rules_for(request.namespace))

    def missing_for_grant(self, rules: list[dict], namespace: str) -> list[str]:
        """The permissions in ``rules`` the subject does not hold in ``namespace`` (ConfirmNoEscalation)."""
        held = self.rules_for(namespace)
        missing = []
        for rule in rules:
            for group in rule.get("apiGroups") or [""]:
                for resource in rule.get("resources") or []:
                    for verb in rule.get("verbs") or []:
                        for name in rule.get("resourceNames") or [""]:
                            if not any(_covers(h, group, resource, verb, name) for h in held):
                                missing.append(f'{{APIGroups:["{group}"], Resources:["{resource}"], Verbs:["{verb}"]}}')
        return missing

    def refuse_escalation(self, obj: dict, namespace: str, roles: dict | None = None) -> str | None:
        """Why creating or patching this Role/RoleBinding would be refused; None when allowed. ``roles``: Roles
        created along with it (``(kind, name) -> object``), which a RoleBinding may name."""
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind in {"Role", "ClusterRole"}:
            if self.allows(
                Request(
                    "escalate",
                    "rbac.authorization.k8s.io",
                    "roles" if kind == "Role" else "clusterroles",
                    namespace,
                    name,
                )
            ):
                return None
            missing = self.missing_for_grant(obj.get("rules") or [], namespace)
            resource = "roles" if kind == "Role" else "clusterroles"
        elif kind in {"RoleBinding", "ClusterRoleBinding"}:
            ref = obj["roleRef"]
            bound = "roles" if ref["kind"] == "Role" else "clusterroles"
            if self.allows(Request("bind", "rbac.authorization.k8s.io", bound, namespace, ref["name"])):
                return None
            role = (roles or {}).get((ref["kind"], ref["name"])) or self._role(ref["kind"], ref["name"], namespace)
            everything = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]  # an unknown role: assume all
            missing = self.missing_for_grant((role or {}).get("rules") or everything, namespace)
            resource = "rolebindings" if kind == "RoleBinding" else "clusterrolebindings"
        else:
            return None
        if not missing:
            return None
        return (
            f'{resource}.rbac.authorization.k8s.io "{name}" is forbidden: user "{self.user}" (groups=["system:serviceaccounts" '
            f'"system:authenticated"]) is attempting to grant RBAC permissions not currently held:\n'
            + "\n".join(missing)
        )


def _has(values: list[str] | None, wanted: str) -> bool:
    values = values or []
    return "*" in values or wanted in values


def _covers(held: dict, group: str, resource: str, verb: str, name: str) -> bool:
    """Whether a held rule covers one requested permission (a requested ``*`` needs a held ``*``)."""
    names = held.get("resourceNames") or []
    return (
        _has(held.get("apiGroups"), group)
        and _has(held.get("resources"), resource)
        and _has(held.get("verbs"), verb)
        and (not names or (name != "" and name in names))
    )
