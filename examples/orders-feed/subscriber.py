"""A Python client of the orders feed (`pip install websockets`): subscribes to `orders` and
prints each order as it arrives.

    python3 examples/orders-feed/subscriber.py --ca .wasmsock/dev-cert.pem
"""

import argparse
import asyncio
import json
import ssl

import websockets


async def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", default="wss://localhost:8443/orders?name=watcher")
    p.add_argument("--ca", help="CA file for a self-signed server certificate")
    p.add_argument("--count", type=int, default=0, help="orders to wait for (0: forever)")
    args = p.parse_args()
    ctx = ssl.create_default_context(cafile=args.ca) if args.ca else None
    async with websockets.connect(args.url, ssl=ctx) as ws:
        await ws.send(json.dumps({"event": "subscribe", "channel": "orders"}))
        seen = 0
        async for text in ws:
            event = json.loads(text)
            if event.get("event") == "subscribed":
                print("subscribed", flush=True)
            elif event.get("event") == "message":
                print(json.dumps(event["data"]), flush=True)
                seen += 1
                if args.count and seen >= args.count:
                    return


asyncio.run(main())
