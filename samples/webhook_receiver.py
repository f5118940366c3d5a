"""A webhook receiver that prints what ivrsim posts.

    .venv/bin/python samples/webhook_receiver.py --port 9000 [--secret whsec_...]

Then place calls with "webhook_url": "http://127.0.0.1:9000/hooks".
"""

import argparse
import json
import time

from ivrsim.webhooks.receiver import WebhookReceiver

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--port", type=int, default=9000)
parser.add_argument("--secret", default=None, help="check X-Ivrsim-Signature with this secret")
args = parser.parse_args()

with WebhookReceiver(port=args.port, secret=args.secret) as receiver:
    print(f"listening on {receiver.url}", flush=True)
    shown = 0
    try:
        while True:
            time.sleep(0.1)
            for hook in receiver.received[shown:]:
                check = "" if hook.signature_ok is None else (" (signature ok)" if hook.signature_ok else " (BAD SIGNATURE)")
                print(f"{hook.path}{check}: {json.dumps(hook.payload)}", flush=True)
            shown = len(receiver.received)
    except KeyboardInterrupt:
        pass
