import unittest

from app import Handler
from wasmsock_sdk import Flow
from wasmsock_sdk.testing import TestHost


class EchoTest(unittest.TestCase):
    def test_echoes_text_and_binary_to_the_sender_only(self):
        host = TestHost()
        a, b = host.open("/echo"), host.open("/echo")
        self.assertEqual(host.message(Handler, a, "hello"), Flow.done())
        self.assertEqual(host.message(Handler, a, b"\x00\x9f\xff"), Flow.done())
        self.assertEqual(host.sent(a), ["hello", b"\x00\x9f\xff"])
        self.assertEqual(host.sent(b), [])

    def test_a_closed_peer_is_not_an_error(self):
        host = TestHost()
        a = host.open("/echo")
        host.close(Handler, a, 1000, "bye")
        self.assertEqual(host.message(Handler, a, "late"), Flow.done())
        self.assertFalse(host.is_open(a))


if __name__ == "__main__":
    unittest.main()
