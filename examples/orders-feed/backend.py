"""The orders backend: publishes each new order to the `orders` channel through wasmsock's
HTTP API with Centrifugo's own client (`pip install 'cent>=5,<6'`); written for Centrifugo, it
only needed wasmsock's URL.

    python3 examples/orders-feed/backend.py --count 5 --ca .wasmsock/dev-cert.pem
"""

import argparse
import itertools
import os
import random
import ssl
import time

import cent
import requests
from requests.adapters import HTTPAdapter


class TrustCa(HTTPAdapter):
    """Trusts one CA file the way Python's ssl module does (the development certificate)."""

    def __init__(self, ca):
        self.ca = ca
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["ssl_context"] = ssl.create_default_context(cafile=self.ca)
        return super().init_poolmanager(*args, **kwargs)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", default="https://localhost:8443/api")
    p.add_argument("--key", default=os.environ.get("WASMSOCK_API_KEY", "orders-dev-key"))
    p.add_argument("--ca", help="CA file for a self-signed server certificate")
    p.add_argument("--count", type=int, default=0, help="orders to publish (0: forever)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between orders")
    args = p.parse_args()

    session = requests.Session()
    if args.ca:
        session.mount("https://", TrustCa(args.ca))
    client = cent.Client(args.url, args.key, session=session)
    items = ["coffee", "bagel", "tea", "croissant"]
    for n in itertools.count(1):
        order = {"id": n, "item": random.choice(items), "total": round(random.uniform(2, 20), 2)}
        client.publish(cent.PublishRequest(channel="orders", data=order))
        print(f"published order {n}", flush=True)
        if args.count and n >= args.count:
            break
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
