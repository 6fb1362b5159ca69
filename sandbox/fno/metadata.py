"""`/data/$metadata`: a CSDL document for the sandbox's entity sets, keys, enums and WorkflowWorkItems actions."""

from __future__ import annotations

from typing import Iterable
from xml.sax.saxutils import escape

from sandbox.fno.state import EDM, ENUMS, NAMESPACE, EntityType


def metadata_xml(types: Iterable[EntityType], validate: str, complete: str, outcome: str, comment: str,
                 omit_actions: Iterable[str] = ()) -> str:
    """`types` are the entity types as exposed (removed sets and fields already left out); `omit_actions` names
    bound actions this environment lacks."""
    types, omit = list(types), set(omit_actions)
    by_set = {et.set_name: et for et in types}
    out = ['<?xml version="1.0" encoding="utf-8"?>',
           '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">',
           "<edmx:DataServices>",
           f'<Schema Namespace="{NAMESPACE}" xmlns="http://docs.oasis-open.org/odata/ns/edm">']
    for name, members in ENUMS.items():
        out.append(f'<EnumType Name="{name}">')
        out += [f'<Member Name="{escape(m)}" Value="{i}"/>' for i, m in enumerate(members)]
        out.append("</EnumType>")
    for et in types:
        out.append(f'<EntityType Name="{et.type_name}"><Key>')
        out += [f'<PropertyRef Name="{k}"/>' for k in et.keys]
        out.append("</Key>")
        for field, kind in et.kinds.items():
            edm = f"{NAMESPACE}.{kind}" if kind in ENUMS else EDM[kind]
            nullable = ' Nullable="false"' if field in et.keys else ""
            out.append(f'<Property Name="{field}" Type="{edm}"{nullable}/>')
        for nav_name, nav in et.navs.items():
            target = by_set.get(nav.target)
            if target is None:  # the related set is not exposed here: neither is the navigation
                continue
            qualified = f"{NAMESPACE}.{target.type_name}"
            out.append(f'<NavigationProperty Name="{nav_name}" '
                       f'Type="{f"Collection({qualified})" if nav.many else qualified}"/>')
        out.append("</EntityType>")
    binding = f'<Parameter Name="_bindingParameter" Type="{NAMESPACE}.WorkflowWorkItem"/>'
    if validate not in omit:
        out.append(f'<Action Name="{escape(validate)}" IsBound="true">{binding}'
                   '<ReturnType Type="Edm.Boolean" Nullable="false"/></Action>')
    if complete not in omit:
        out.append(f'<Action Name="{escape(complete)}" IsBound="true">{binding}'
                   f'<Parameter Name="{escape(outcome)}" Type="Edm.String"/>'
                   f'<Parameter Name="{escape(comment)}" Type="Edm.String"/></Action>')
    out.append('<EntityContainer Name="Resources">')
    out += [f'<EntitySet Name="{et.set_name}" EntityType="{NAMESPACE}.{et.type_name}"/>' for et in types]
    out += ["</EntityContainer>", "</Schema>", "</edmx:DataServices>", "</edmx:Edmx>"]
    return "\n".join(out)
