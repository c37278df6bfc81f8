#!/usr/bin/env python3
# Four TLS sessions, idle two seconds; then twelve TCP connections that say nothing (more than
# the server's --max-connections 8 leave room for); then a new TLS client. Prints whether the new
# client was served and how many of the four sessions still echo.
#   tls-silent-flood.py PORT CA
import socket, ssl, sys, time

port, ca = int(sys.argv[1]), sys.argv[2]
context = ssl.create_default_context(cafile=ca)

def session():
    s = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="sluice.test")
    s.sendall(b"x")
    assert s.recv(1) == b"x"
    return s

established = [session() for _ in range(4)]
time.sleep(2)
silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(12)]
time.sleep(0.5)
try:
    session()
    print("new client served")
except Exception as error:
    print("new client refused:", error)
alive = 0
for s in established:
    try:
        s.sendall(b"y")
        alive += s.recv(1) == b"y"
    except Exception:
        pass
print("established sessions alive: %d of 4" % alive)
