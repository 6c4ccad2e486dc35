#!/usr/bin/env python3
"""An experiment for bench/ssh.sh (path E): the single hop without a relay.

usage (ssh_config):  ProxyCommand python3 fdpass.py HOST:PORT %h
                     ProxyUseFdpass yes

`jitproxy ssh-proxy` stays between ssh and the bastion for the whole
session, copying every byte twice more (ssh -> pipe -> ssh-proxy -> TCP and
back). This does what it does up front (connect to the bastion, write the
JITPROXY-TARGET preamble, turn a JITPROXY-ERROR answer into a message on
stderr) and then hands the connected socket itself to ssh over the
ProxyUseFdpass socket and exits, so ssh talks to the bastion directly. The
bastion sees exactly the same bytes as on path C.
"""
import socket
import sys

PREAMBLE = "JITPROXY-TARGET %s\r\n"
ERROR = b"JITPROXY-ERROR "


def main():
    addr, target = sys.argv[1], sys.argv[2]
    host, _, port = addr.rpartition(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    # As jitproxy ssh-proxy's Go socket has: without it, the handshake's
    # small writes wait for delayed ACKs (about 40 ms each on Linux).
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall((PREAMBLE % target).encode())
    # The bastion answers with its SSH version line, or with a refusal:
    # look without consuming, so ssh reads the version line itself.
    # Both answers are longer than ERROR.
    head = s.recv(len(ERROR), socket.MSG_PEEK | socket.MSG_WAITALL)
    if not head:
        sys.exit("jitproxy: the bastion closed the connection before the SSH handshake")
    if head.startswith(ERROR):
        line = s.makefile("rb").readline().decode(errors="replace")
        sys.stderr.write(line[len(ERROR):].strip() + "\n")
        sys.exit(255)
    s.settimeout(None)
    out = socket.socket(fileno=sys.stdout.fileno())
    socket.send_fds(out, [b"\0"], [s.fileno()])


if __name__ == "__main__":
    main()
