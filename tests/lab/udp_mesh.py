"""Run inside a lab node: `serve PORT ADDR…` echoes UDP on those addresses until killed;
`probe PORT ADDR…` sends to each address and prints one JSON object {addr: answered}.

The management VPNs' acceptance test uses it to prove every member reaches every other
member of each VPN over WireGuard.
"""

from __future__ import annotations

import json
import select
import socket
import sys
import time

TRIES = 20
WAIT_S = 0.3


def serve(port: int, addresses: list[str]) -> None:
    """Echo every datagram back to its sender, on every address."""
    socks = []
    for address in addresses:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.bind((address, port))
        socks.append(s)
    print("ready", flush=True)
    while True:
        readable, _, _ = select.select(socks, [], [])
        for s in readable:
            data, peer = s.recvfrom(2048)
            s.sendto(data, peer)


def probe(port: int, addresses: list[str]) -> dict[str, bool]:
    """Whether each address echoed a datagram back."""
    answered = {}
    for address in addresses:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.settimeout(WAIT_S)
        answered[address] = False
        for _ in range(TRIES):
            s.sendto(address.encode(), (address, port))
            try:
                if s.recvfrom(2048)[0] == address.encode():
                    answered[address] = True
                    break
            except TimeoutError:
                time.sleep(0.05)
        s.close()
    return answered


if __name__ == "__main__":
    mode, port, *addrs = sys.argv[1:]
    if mode == "serve":
        serve(int(port), addrs)
    else:
        print(json.dumps(probe(int(port), addrs)))
