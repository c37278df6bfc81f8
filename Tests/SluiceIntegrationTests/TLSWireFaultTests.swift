#if canImport(Glibc)
import Glibc
#endif
import Sluice
import SluiceTestSupport
import Testing

/// Faults on the wire against `sluice tls serve`: a tampered record, an oversized one, a peer
/// that vanishes mid-record. The client is Sluice's own engine over a plain kernel socket, so
/// the bytes can be bent on purpose.
@Suite("TLS server against tampered and vanishing peers", .serialized)
struct TLSWireFaultTests {
    /// A TLS client over a blocking kernel socket.
    final class WireClient {
        let socket: KernelTCPSocket
        let engine: TLSEngine
        var received: [UInt8] = []

        init(port: Int) throws {
            socket = try KernelTCPSocket(connectingTo: IPEndpoint("127.0.0.1:\(port)")!)
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(socket.descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let context = try TLSContext(.client(peerVerification: .trustedCertificates(path: TLSInteropTests.authority)))
            engine = try TLSEngine(context: context, serverName: "sluice.test")
            _ = engine.start()
            flush()
            while engine.state == .handshaking {
                guard readOnce() else { break }
            }
        }

        func flush() {
            let bytes = engine.outbound
            engine.consumeOutbound(bytes.count)
            write(bytes)
        }

        func write(_ bytes: [UInt8]) {
            _ = bytes.withUnsafeBytes { send(socket.descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }

        /// Reads once and feeds the engine; false at EOF, timeout or error.
        @discardableResult
        func readOnce() -> Bool {
            var buffer = [UInt8](repeating: 0, count: 65536)
            let n = recv(socket.descriptor, &buffer, buffer.count, 0)
            guard n > 0 else { return false }
            _ = buffer.withUnsafeMutableBytes { raw in
                engine.receive(UnsafeMutableRawBufferPointer(rebasing: raw[..<n])) { self.received += $0 }
            }
            flush()
            return true
        }

        /// One application-data record for `content`.
        func record(_ content: [UInt8]) -> [UInt8] {
            var out = [UInt8](repeating: 0, count: content.count + engine.recordOverhead)
            let length = out.withUnsafeMutableBytes { o in content.withUnsafeBytes { engine.seal($0, into: o.baseAddress!) } }
            return Array(out.prefix(length))
        }

        /// Reads until the server closes; true when it did (EOF or reset) within 30 s, with no
        /// read waiting more than the socket's 5 s. Bounded by time, not by reads: under
        /// AddressSanitizer an echo of megabytes can come a record per read.
        func readUntilClosed() -> Bool {
            var buffer = [UInt8](repeating: 0, count: 65536)
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline {
                let n = recv(socket.descriptor, &buffer, buffer.count, 0)
                if n == 0 || (n < 0 && errno == ECONNRESET) { return true }
                if n < 0 { return false }
                _ = buffer.withUnsafeMutableBytes { raw in
                    engine.receive(UnsafeMutableRawBufferPointer(rebasing: raw[..<n])) { self.received += $0 }
                }
            }
            return false
        }
    }

    /// Handshakes, sends half a record, and resets the connection (the socket closes on return).
    func vanish(port: Int) throws {
        let vanishing = try WireClient(port: port)
        let record = vanishing.record(Array(repeating: 0x42, count: 16000))
        vanishing.write(Array(record.prefix(7000)))
        var linger = linger(l_onoff: 1, l_linger: 0)
        setsockopt(vanishing.socket.descriptor, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<linger>.size))
    }

    @Test("a flipped bit gets bad_record_mac and a close; a record past the limit gets record_overflow; a vanished peer frees everything")
    func faults() throws {
        guard TLSInteropTests.peersAvailable() else { return }
        let (server, port) = try TLSInteropTests.serve(["--echo"])

        let good = try WireClient(port: port)
        #expect(good.engine.state == .established, "\(String(describing: good.engine.error))")
        good.write(good.record(Array("hello".utf8)))
        while good.received.count < 5, good.readOnce() {}
        #expect(good.received == Array("hello".utf8))

        let tampered = try WireClient(port: port)
        var record = tampered.record(Array(repeating: 0x41, count: 1000))
        record[record.count / 2] ^= 0x04
        tampered.write(record)
        #expect(tampered.readUntilClosed())
        #expect(tampered.engine.error?.receivedAlert == .badRecordMAC, "\(String(describing: tampered.engine.error))")
        #expect(tampered.received.isEmpty)

        let oversized = try WireClient(port: port)
        oversized.write([23, 3, 3, 0x41, 0x01] + [UInt8](repeating: 0, count: 64))
        #expect(oversized.readUntilClosed())
        #expect(oversized.engine.error?.receivedAlert == .recordOverflow, "\(String(describing: oversized.engine.error))")

        try vanish(port: port)

        // The server goes on serving the connection that behaved.
        usleep(200_000)
        good.write(good.record(Array("again".utf8)))
        while good.received.count < 10, good.readOnce() {}
        #expect(good.received == Array("helloagain".utf8))
        good.engine.close()
        good.flush()
        #expect(good.readUntilClosed())
        #expect(good.engine.isReadClosed)

        let report = TLSInteropTests.finish(server)
        #expect(report.contains("4 handshakes: 4 completed (0 resumed), 0 failed"), "\(report)")
        #expect(report.contains("2 connections failed"), "\(report)")
        #expect(report.contains("Connection reset by peer") || report.contains("cut without close_notify"), "\(report)")
        #expect(report.contains("frames: all returned to their pool"), "\(report)")
    }

    /// Clients that take a file and stop reading hold its records in flight; each may hold only
    /// its share of the frames, so the next client still gets the whole file.
    @Test func clientsThatStopReadingAFileDoNotStarveTheNext() throws {
        guard TLSInteropTests.peersAvailable() else { return }
        let path = "/tmp/sluice-tls-file-\(getpid())"
        try TLSInteropTests.makeInput(path, megabytes: 16)
        defer { unlink(path) }
        let (server, port) = try TLSInteropTests.serve(["--file", path, "--frames", "64"])
        let stalled = try (0..<20).map { _ in
            let client = try WireClient(port: port)
            var small: Int32 = 4096
            setsockopt(client.socket.descriptor, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
            return client
        }
        #expect(stalled.allSatisfy { $0.engine.state == .established })
        usleep(500_000)
        let reader = try WireClient(port: port)
        while reader.received.count < 16 << 20, reader.readOnce() {}
        withExtendedLifetime(stalled) {}
        let report = TLSInteropTests.finish(server)
        #expect(reader.received.count == 16 << 20, "the file stopped after \(reader.received.count) bytes, reader \(reader.engine.state): \(report)")
        #expect(report.contains("frames: all returned to their pool"), "\(report)")
    }

    /// A kernel TCP socket listening on a free loopback port, and the port.
    func listeningSocket() throws -> (descriptor: Int32, port: UInt16) {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_in(sin_family: sa_family_t(AF_INET), sin_port: 0,
                                  sin_addr: in_addr(s_addr: UInt32(0x7F00_0001).bigEndian), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) == 0 && listen(listener, 4) == 0
                && getsockname(listener, $0, &length) == 0 }
        }
        guard bound else {
            close(listener)
            throw ChildProcessError(message: "a loopback listener: errno \(errno)")
        }
        return (listener, UInt16(bigEndian: address.sin_port))
    }

    /// A server that accepts and never answers: `tls connect` gives up after its handshake
    /// timeout, saying so, instead of waiting for ever.
    @Test func aSilentServerIsGivenUpOnAfterTheHandshakeTimeout() throws {
        let (listener, port) = try listeningSocket()
        defer { close(listener) }
        let clock = ContinuousClock()
        let start = clock.now
        let client = try ChildProcess(sluice: ["tls", "connect", "127.0.0.1:\(port)", "--insecure", "--handshake-timeout", "1"])
        #expect(client.waitForExit(timeout: .seconds(10)) == 1, "\(client.text)")
        #expect(clock.now - start < .seconds(5))
        #expect(client.text.contains("did not finish it within 1"), "\(client.text)")
    }

    /// A server that resets the connection as soon as it accepts it: the reset is what is said,
    /// not the "not connected" of the send that found the connection gone.
    @Test func aResetRightAfterAcceptIsSaidAsAReset() throws {
        let (listener, port) = try listeningSocket()
        defer { close(listener) }
        let client = try ChildProcess(sluice: ["tls", "connect", "127.0.0.1:\(port)", "--insecure"])
        var ready = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        try #require(poll(&ready, 1, 10_000) == 1, "no connection came")
        let accepted = accept(listener, nil, nil)
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(accepted, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(accepted)
        #expect(client.waitForExit(timeout: .seconds(10)) == 1, "\(client.text)")
        #expect(client.text.contains("Connection reset by peer"), "\(client.text)")
    }

    /// A stop in the middle of a file does not end it with close_notify, which would tell the
    /// client it has it all: the connection is reset, the client sees the truncation, and the
    /// summary counts it cut short, not completed.
    @Test func aStopMidFileIsATruncationNotAnEnd() throws {
        let file = "/tmp/sluice-tls-file-\(getpid())"
        let output = file + ".out"
        defer { unlink(file); unlink(output) }
        #expect(try TLSInteropTests.shell("head -c 30000000 /dev/urandom > \(file)").status == 0)
        let (server, port) = try TLSInteropTests.serve(["--file", file])
        let client = try ChildProcess("/bin/bash", ["-c", "set -o pipefail; \"$0\" tls connect 127.0.0.1:\(port) "
            + "--ca '\(TLSInteropTests.authority)' --sni sluice.test --wait-for-server < /dev/null | (sleep 1.5; cat) > \(output)",
            SluiceExecutable.path])
        usleep(500_000)
        #expect(server.stop() == 0, "\(server.text)")
        #expect(client.waitForExit(timeout: .seconds(20)) == 1, "\(client.text)")
        #expect(client.text.contains("without close_notify"), "\(client.text)")
        var status = stat()
        let received = stat(output, &status) == 0 ? Int(status.st_size) : 0
        #expect(received < 30_000_000, "\(received) bytes")
        #expect(server.text.contains("0 connections completed, 1 cut short by the stop"), "\(server.text)")
    }

    /// The same for an echo whose client sent more than it has read back: what waits to be
    /// echoed at the stop is not followed by a close_notify that would pass the part for the
    /// whole. The client (Python's ssl, ragged EOFs not suppressed) sends without reading until
    /// the server holds it back, so the server's replies wait for frames; at the stop it sees
    /// the truncation.
    @Test func aStopWithEchoBytesUnsentIsATruncationNotAnEnd() throws {
        let (server, port) = try TLSInteropTests.serve(["--echo", "--frames", "32"])
        let script = """
            import socket, ssl, sys, os, signal, time
            context = ssl.create_default_context(cafile=sys.argv[2])
            raw = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            tls = context.wrap_socket(raw, server_hostname="sluice.test", suppress_ragged_eofs=False)
            # One thread (an SSL object is not for two): send until the server stops taking it.
            tls.settimeout(0.5)
            try:
                for _ in range(2000): tls.sendall(b"x" * 16384)
            except socket.timeout:
                pass
            tls.settimeout(10)
            os.kill(int(sys.argv[3]), signal.SIGINT)
            # Nothing read during the stop's grace (a second): what waits cannot drain in it.
            time.sleep(1.5)
            try:
                while tls.recv(65536): pass
                print("end: close_notify")
            except Exception as error:
                print("end:", type(error).__name__)
            """
        let client = try ChildProcess("/usr/bin/python3", ["-c", script, "\(port)", TLSInteropTests.authority, "\(server.pid)"])
        #expect(client.waitForExit(timeout: .seconds(20)) == 0, "\(client.text)")
        #expect(client.text.contains("end: SSLEOFError") || client.text.contains("end: ConnectionResetError"), "\(client.text)")
        #expect(server.waitForExit(timeout: .seconds(10)) == 0, "\(server.text)")
        #expect(server.text.contains("0 connections completed, 1 cut short by the stop"), "\(server.text)")
    }

    /// The idle timeout ending an established connection is said as such, not as a failure of
    /// TCP, and how it ended is in the metrics too.
    @Test func anIdleConnectionClosedIsNotATransportFailure() throws {
        let (server, port) = try TLSInteropTests.serve(["--echo", "--idle-timeout", "0.5"])
        let script = """
            import socket, ssl, sys, time
            context = ssl.create_default_context(cafile=sys.argv[2])
            tls = context.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="sluice.test")
            tls.sendall(b"x"); print("echo:", tls.recv(1))
            time.sleep(1.5)
            try: print("after:", tls.recv(1))
            except Exception as error: print("after:", type(error).__name__)
            """
        let client = try ChildProcess("/usr/bin/python3", ["-c", script, "\(port)", TLSInteropTests.authority])
        #expect(client.waitForExit(timeout: .seconds(20)) == 0, "\(client.text)")
        #expect(client.text.contains("echo: b'x'"), "\(client.text)")
        #expect(server.stop() == 0)
        #expect(server.text.contains("0 ended by TCP or for want of frames, 1 closed idle"), "\(server.text)")
    }

    /// Clients that connect and say nothing, as many as the limit allows, do not lock a real
    /// client out until their handshake timeout: at the limit the idlest make room.
    @Test func silentClientsAtTheLimitMakeRoomForARealOne() throws {
        let (server, port) = try TLSInteropTests.serve(["--echo", "--max-connections", "4", "--idle-timeout", "1.6"])
        let script = """
            import socket, ssl, sys, time
            silent = [socket.create_connection(("127.0.0.1", int(sys.argv[1]))) for _ in range(4)]
            time.sleep(0.5)
            context = ssl.create_default_context(cafile=sys.argv[2])
            tls = context.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5), server_hostname="sluice.test")
            tls.sendall(b"hello"); print("echo:", tls.recv(5))
            """
        let client = try ChildProcess("/usr/bin/python3", ["-c", script, "\(port)", TLSInteropTests.authority])
        #expect(client.waitForExit(timeout: .seconds(20)) == 0, "\(client.text)")
        #expect(client.text.contains("echo: b'hello'"), "\(client.text)")
        #expect(server.stop() == 0)
        #expect(server.text.contains("closed idlest to make room ") && !server.text.contains("closed idlest to make room 0"),
                "\(server.text)")
    }

    /// A client that shuts its side with a FIN and no close_notify is a cut connection, not a
    /// completed one; a client that closes mid-handshake is a failed handshake only (not also a
    /// cut); one left open past the stop's grace is neither completed nor failed.
    @Test func cutsFailedHandshakesAndConnectionsOpenAtTheStopAreToldApart() throws {
        let (server, port) = try TLSInteropTests.serve(["--echo", "--frames", "32"])
        let client = try WireClient(port: port)
        let payload = [UInt8](repeating: 0x5A, count: 16000)
        var buffer = [UInt8](repeating: 0, count: 65536)
        func drain() {
            while true {
                let n = recv(client.socket.descriptor, &buffer, buffer.count, Int32(MSG_DONTWAIT))
                guard n > 0 else { return }
                _ = buffer.withUnsafeMutableBytes { raw in
                    client.engine.receive(UnsafeMutableRawBufferPointer(rebasing: raw[..<n])) { client.received += $0 }
                }
            }
        }
        for index in 0..<190 {
            client.write(client.record(payload))
            if index % 4 == 0 { drain() }
        }
        shutdown(client.socket.descriptor, Int32(SHUT_WR))
        #expect(client.readUntilClosed())
        // A client gone mid-handshake, and one that stays open through the stop.
        let halfway = try KernelTCPSocket(connectingTo: IPEndpoint("127.0.0.1:\(port)")!)
        _ = [UInt8]([0x16, 3, 1, 0, 40, 1]).withUnsafeBytes { send(halfway.descriptor, $0.baseAddress, $0.count, 0) }
        shutdown(halfway.descriptor, Int32(SHUT_WR))
        let lingering = try WireClient(port: port)
        usleep(300_000)
        let report = TLSInteropTests.finish(server)
        #expect(report.contains("3 handshakes: 2 completed (0 resumed), 1 failed; 0 connections completed, 1 still open at the stop"), "\(report)")
        #expect(report.contains("0 connections failed, 1 cut without close_notify"), "\(report)")
        withExtendedLifetime((halfway, lingering)) {}
    }

    /// A TLS 1.2 server whose Finished, data and close_notify reach the client in one TCP chunk
    /// (a proxy holds them back a moment): the close_notify in the chunk that ends the handshake
    /// ends the connection at once, as s_client and gnutls-cli take it, not when standard input ends.
    @Test func aCloseNotifyInTheChunkThatEndsTheHandshakeIsHeard() throws {
        let script = "/tmp/sluice-tls-proxy-\(getpid()).py"
        try Self.heldBackProxy.write(toFile: script, atomically: true, encoding: .utf8)
        defer { unlink(script) }
        let proxy = try ChildProcess("/usr/bin/python3", [script, TLSInteropTests.certificate, TLSInteropTests.key])
        let port = try #require(proxy.waitForLine(containing: "port ").flatMap { Int($0.split(separator: " ").last ?? "") }, "\(proxy.text)")
        let client = try ChildProcess("/bin/sh", ["-c", "sleep 8 | \"$0\" tls connect 127.0.0.1:\(port) --ca '\(TLSInteropTests.authority)' --sni sluice.test",
                                                  SluiceExecutable.path])
        #expect(client.waitForLine(containing: "the server closed before standard input ended", timeout: .seconds(4)) != nil, "\(client.text)")
        #expect(client.text.contains("banner"), "\(client.text)")
        #expect(proxy.waitForLine(containing: "server got close_notify", timeout: .seconds(4)) != nil, "\(proxy.text)")
        _ = client.stop()
        _ = proxy.stop()
    }

    /// The proxy of ``aCloseNotifyInTheChunkThatEndsTheHandshakeIsHeard()``: Python's TLS server,
    /// its first flight passed at once, the rest written in one go 0.3 s after the client's Finished.
    static let heldBackProxy = #"""
import socket, ssl, sys, threading, time
cert, key = sys.argv[1], sys.argv[2]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.maximum_version = ssl.TLSVersion.TLSv1_2
server = socket.socket(); server.bind(('127.0.0.1', 0)); server.listen()
proxy = socket.socket(); proxy.bind(('127.0.0.1', 0)); proxy.listen()
print('port', proxy.getsockname()[1], flush=True)
def serve():
    c, _ = server.accept()
    t = ctx.wrap_socket(c, server_side=True)
    t.sendall(b'banner\n')
    try:
        t.unwrap()
        print('server got close_notify', flush=True)
    except Exception as e:
        print('server:', e, flush=True)
threading.Thread(target=serve, daemon=True).start()
client, _ = proxy.accept()
upstream = socket.create_connection(server.getsockname())
forwarded = [0]
def up():
    while True:
        d = client.recv(65536)
        if not d: break
        upstream.sendall(d); forwarded[0] += 1
    upstream.shutdown(socket.SHUT_WR)
threading.Thread(target=up, daemon=True).start()
client.sendall(upstream.recv(65536))          # the server's first flight, at once
while forwarded[0] < 2: time.sleep(0.01)      # the client's key exchange and Finished are on their way
time.sleep(0.3)                                # its Finished, the banner and close_notify: one write
upstream.setblocking(False)
held = b''
try:
    while True:
        d = upstream.recv(65536)
        if not d: break
        held += d
except BlockingIOError:
    pass
client.sendall(held)
upstream.setblocking(True)
while True:
    d = upstream.recv(65536)
    if not d: break
    client.sendall(d)
time.sleep(1)
"""#
}
