"""The sandbox's people: one tenant, the same users in Entra/Graph, Teams and F&O's SystemUsers.

Fixed ids so that a demo run, a test and a log line all name the same person.
"""

from __future__ import annotations

from dataclasses import dataclass

TENANT_ID = "7d3c1e2a-5b64-4f0e-9a1d-2c7b8e4f6a10"
TENANT_DOMAIN = "contoso-distribution.example"


@dataclass(frozen=True)
class Person:
    fo_user_id: str  # F&O SystemUsers.UserID
    name: str
    upn: str  # also the mail address and F&O SystemUsers.Alias
    object_id: str  # Entra object id
    job_title: str
    company: str  # default F&O legal entity


def _p(uid: str, name: str, local: str, n: int, title: str, company: str) -> Person:
    return Person(uid, name, f"{local}@{TENANT_DOMAIN}", f"0b5e{n:04x}-3c2d-4e1f-8a9b-{n:012x}", title, company)


PEOPLE: tuple[Person, ...] = (
    _p("adele", "Adele Vance", "adele.vance", 1, "Accounts Payable Manager", "usmf"),
    _p("alex", "Alex Wilber", "alex.wilber", 2, "Purchasing Agent", "usmf"),
    _p("megan", "Megan Bowen", "megan.bowen", 3, "Chief Financial Officer", "usmf"),
    _p("lidia", "Lidia Holloway", "lidia.holloway", 4, "Procurement Lead", "usmf"),
    _p("lynne", "Lynne Robbins", "lynne.robbins", 5, "AP Clerk", "usmf"),
    _p("nestor", "Nestor Wilke", "nestor.wilke", 6, "Treasury Analyst", "usmf"),
    _p("johanna", "Johanna Lorenz", "johanna.lorenz", 7, "Einkaufsleiterin", "demf"),
    _p("jurgen", "Jürgen Böhm", "juergen.boehm", 8, "Kreditorenbuchhaltung", "demf"),
    _p("isaiah", "Isaiah Langer", "isaiah.langer", 9, "Finance Controller", "gbsi"),
    _p("grady", "Grady Archie", "grady.archie", 10, "Warehouse Buyer", "gbsi"),
    _p("patti", "Patti Fernandez", "patti.fernandez", 11, "IT Administrator", "usmf"),
    _p("diego", "Diego Siciliani", "diego.siciliani", 12, "Purchasing Agent", "usmf"),
)

LEGAL_ENTITIES: dict[str, str] = {"usmf": "USD", "demf": "EUR", "gbsi": "GBP"}


def by_fo_user(user_id: str) -> Person | None:
    return next((p for p in PEOPLE if p.fo_user_id.lower() == user_id.lower()), None)
