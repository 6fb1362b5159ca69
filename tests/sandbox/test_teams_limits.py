"""Rate-limit windows and the card lint, without HTTP."""

from __future__ import annotations

from sandbox.teams.limits import Fault, Faults, RateLimiter
from sandbox.teams.lint import lint_activity


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_hourly_window_1800_sends_per_thread():
    clock = Clock()
    limiter = RateLimiter(clock)
    for i in range(1800):
        clock.now = i * 1.9  # 1 per 1.9 s stays under the 1 s, 2 s and 30 s windows (16 per 30 s)
        assert limiter.check("send", "T", "tenant") is None, i
    clock.now = 1800 * 1.9
    refused = limiter.check("send", "T", "tenant")
    assert refused is not None and refused.scope.endswith("1800/3600s")
    assert refused.retry_after == 3600 - clock.now  # until the first send leaves the hour
    assert limiter.check("send", "other thread", "tenant") is None
    assert limiter.check("create", "T", "tenant") is None  # create has its own windows


def test_refusals_do_not_count_and_members_have_wider_windows():
    clock = Clock()
    limiter = RateLimiter(clock)
    assert all(limiter.check("members", "T", "x") is None for _ in range(14))
    assert limiter.check("members", "T", "x") is not None
    clock.now = 1.0
    assert limiter.check("members", "T", "x") is None  # the 1 s window emptied; 15 of 16 in 2 s


def test_disabled_limiter_admits_everything():
    limiter = RateLimiter(Clock(), enabled=False)
    assert all(limiter.check("send", "T", "x") is None for _ in range(100))


def test_faults_match_prefix_and_method_and_run_out():
    faults = Faults()
    faults.add(Fault("/v3/conversations", 503, 2, method="POST"))
    assert faults.take("GET", "/v3/conversations/x/members") is None
    assert faults.take("POST", "/v3/conversations/x/activities").status == 503
    assert faults.take("POST", "/v3/conversations").status == 503
    assert faults.take("POST", "/v3/conversations") is None


def test_lint_accepts_a_clean_card_and_names_each_problem():
    def act(card):
        return {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                                                    "content": card}]}
    clean = {"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock", "text": "<at>A B</at>"}],
             "msteams": {"entities": [{"type": "mention", "text": "<at>A B</at>",
                                       "mentioned": {"id": "a.b@contoso.example", "name": "A B"}}]}}
    assert lint_activity(act(clean)) == []
    assert lint_activity({"type": "message", "text": "plain"}) == []
    problems = lint_activity(act({"type": "AdaptiveCard", "body": []}))
    assert problems and "version" in problems[0]
    assert lint_activity(act(dict(clean, version="1.10")))  # 1.10 > 1.5 numerically, not as text
    mention_only_in_entities = dict(clean, body=[{"type": "TextBlock", "text": "A B"}])
    assert "does not occur" in lint_activity(act(mention_only_in_entities))[0]
