"""F&O user -> Entra user: configuration first, then the store's cache, then Graph (negative answers cached shorter)."""

from __future__ import annotations

from approvals_fakes import ADELE, ENV, MEGAN, Clock, FakeGraph
from connector.approvals import ApproverResolver
from connector.store import open_store


async def test_mapping_order_and_cache(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'm.db'}")
    await store.open()
    clock, graph = Clock(), FakeGraph()
    resolver = ApproverResolver(store, graph, user_map={"Lidia": ADELE.upn, "nestor": "{" + MEGAN.id.upper() + "}"},
                                mapping_ttl=3600, negative_ttl=60, clock=clock)
    try:
        found = await resolver.resolve(ENV, "megan", upn=MEGAN.upn)
        assert (found.object_id, found.name, found.source) == (MEGAN.id, "Megan Bowen", "graph")
        again = await resolver.resolve(ENV, "MEGAN", upn=MEGAN.upn)
        assert again.source == "cache" and graph.lookups == [MEGAN.upn]
        clock.now += 3601
        assert (await resolver.resolve(ENV, "megan", upn=MEGAN.upn)).source == "graph"

        ghost = await resolver.resolve(ENV, "ghost", upn="ghost@contoso.example", name="Ghost")
        assert ghost.object_id is None and "not found in Entra ID" in ghost.note
        assert (await resolver.resolve(ENV, "ghost", upn="ghost@contoso.example")).source == "cache"
        clock.now += 61
        assert (await resolver.resolve(ENV, "ghost", upn="ghost@contoso.example")).source == "graph"

        # configuration wins, whatever F&O says (UPN or object id, braces and case as F&O writes them)
        pinned = await resolver.resolve(ENV, "lidia", upn="lidia@contoso.example")
        assert (pinned.object_id, pinned.source) == (ADELE.id, "config")
        assert (await resolver.resolve(ENV, "nestor", upn=None)).object_id == MEGAN.id
        # the delivery stage's resolved mention is used (and cached) without another Graph call
        lookups = len(graph.lookups)
        known = await resolver.resolve(ENV, "adele", upn=ADELE.upn, known={"id": ADELE.id, "name": "Adele V."})
        assert (known.object_id, known.name, known.source) == (ADELE.id, "Adele V.", "card")
        assert len(graph.lookups) == lookups
        assert (await store.get_user_mapping(ENV, "ADELE")).object_id == ADELE.id
        # no UPN, or no Graph: a reason instead of an exception
        assert "no Alias/Email" in (await resolver.resolve(ENV, "svc", upn=None)).note
        nograph = ApproverResolver(store, None, user_map={}, mapping_ttl=1, negative_ttl=1, clock=clock)
        assert "not configured" in (await nograph.resolve(ENV, "x", upn="x@contoso.example")).note
    finally:
        await store.close()
