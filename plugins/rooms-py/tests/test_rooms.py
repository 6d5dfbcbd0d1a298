import json
import unittest

from app import Handler
from wasmsock_sdk import Connect, Request
from wasmsock_sdk.testing import TestHost


def replies(host, conn):
    return [m.parse_json() for m in host.sent(conn)]


class RoomsTest(unittest.TestCase):
    def test_members_get_what_others_publish_with_the_sender_named(self):
        host = TestHost()
        ada, _ = host.connect(Handler, Request("/rooms", query="user=ada"))
        bob = host.open("/rooms")
        for c in (ada, bob):
            host.message(Handler, c, json.dumps({"event": "subscribe", "channel": "news"}))
        self.assertEqual(replies(host, bob), [{"event": "subscribed", "channel": "news", "members": 2}])
        host.sent(ada)
        host.message(Handler, ada, json.dumps({"event": "publish", "channel": "news", "data": {"n": 1}}))
        self.assertEqual(
            replies(host, bob), [{"event": "message", "channel": "news", "data": {"n": 1}, "from": "ada"}]
        )
        self.assertEqual(replies(host, ada), [], "the sender does not get its own message")

    def test_publish_counts_are_kept_in_the_store_and_the_attachment(self):
        host = TestHost()
        a = host.open("/rooms")
        for n in (1, 2):
            host.message(Handler, a, json.dumps({"event": "publish", "channel": "c", "data": n}))
        host.message(Handler, a, json.dumps({"event": "stats", "channel": "c"}))
        self.assertEqual(
            replies(host, a), [{"event": "stats", "channel": "c", "published": 2, "members": 0, "sent": 2}]
        )
        self.assertEqual(host.kv("published:c"), b"2")

    def test_bad_requests_get_an_error_reply_and_the_connection_stays(self):
        host = TestHost()
        a = host.open("/rooms")
        host.message(Handler, a, "not json")
        host.message(Handler, a, json.dumps({"event": "subscribe", "channel": ""}))
        got = replies(host, a)
        self.assertEqual([r["event"] for r in got], ["error", "error"])
        self.assertTrue(host.is_open(a))

    def test_a_room_limit_is_reported_not_raised(self):
        host = TestHost(max_rooms_per_connection=1)
        a = host.open("/rooms")
        host.message(Handler, a, json.dumps({"event": "subscribe", "channel": "one"}))
        host.message(Handler, a, json.dumps({"event": "subscribe", "channel": "two"}))
        self.assertEqual(replies(host, a)[1], {"event": "error", "reason": "join: limit-reached"})

    def test_a_user_named_in_the_query_names_the_connection(self):
        host = TestHost()
        _, answer = host.connect(Handler, Request("/rooms", query="user=ada"))
        self.assertEqual(answer, Connect.accept_as("ada"))


if __name__ == "__main__":
    unittest.main()
