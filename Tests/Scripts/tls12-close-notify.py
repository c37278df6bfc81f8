# A TLS 1.2 client that sends RECORDS records of SIZE bytes and its close_notify before reading
# anything, then counts the echo that comes back before the server's close_notify (RFC 5246
# 7.2.1: the server answers at once, its pending writes discarded). Usage: PORT CA_FILE RECORDS SIZE
import socket, ssl, sys
port, ca, records, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ctx = ssl.create_default_context(cafile=ca); ctx.maximum_version = ssl.TLSVersion.TLSv1_2
s = socket.create_connection(('127.0.0.1', port))
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
o = ctx.wrap_bio(inc, out, server_hostname='sluice.test')
def flush():
    d = out.read()
    if d: s.sendall(d)
while True:
    try:
        o.do_handshake(); break
    except ssl.SSLWantReadError:
        flush(); inc.write(s.recv(65536))
flush()
for _ in range(records): o.write(b'x' * size)
try: o.unwrap()
except ssl.SSLWantReadError: pass
flush()
n = 0
while True:
    try:
        n += len(o.read(65536))
    except ssl.SSLWantReadError:
        d = s.recv(65536)
        if not d: break
        inc.write(d)
    except (ssl.SSLZeroReturnError, ssl.SSLError):
        break
print('echoed', n)
