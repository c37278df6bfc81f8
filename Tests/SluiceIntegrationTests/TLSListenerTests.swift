#if canImport(Glibc)
import Glibc
#endif
import Sluice
import SluiceTestSupport
import Testing

/// The async edge's TLS listener: what it hands out, and what it counts of what it does not.
@Suite struct TLSListenerTests {
    /// A client that sends no TLS at all, and one that says nothing past its handshake timeout:
    /// neither is handed out, both are counted with the last one's error; a real client is served.
    @Test func failedHandshakesAreCountedAndARealClientIsServed() async throws {
        let context = try TLSContext(.server(certificateChainFile: TLSInteropTests.certificate, privateKeyFile: TLSInteropTests.key))
        let loop = try TCPEventLoop()
        defer { _ = loop.shutdown() }
        // Long enough for a real handshake under AddressSanitizer on a loaded machine.
        let listener = try await TLSListener(on: IPEndpoint("127.0.0.1:0")!, loop: loop, context: context,
                                             handshakeTimeout: .seconds(3))
        let garbage = try KernelTCPSocket(connectingTo: listener.localEndpoint)
        _ = Array("GET / HTTP/1.0\r\n\r\n".utf8).withUnsafeBytes { send(garbage.descriptor, $0.baseAddress, $0.count, 0) }
        let silent = try KernelTCPSocket(connectingTo: listener.localEndpoint)
        let clientContext = try TLSContext(.client(peerVerification: .trustedCertificates(path: TLSInteropTests.authority)))
        // Its own time limit well past the listener's: the whole suite under AddressSanitizer on
        // two CPUs once kept this handshake waiting past the default 10 s.
        let client = try await TLSConnection.connect(to: listener.localEndpoint, on: loop, context: clientContext, serverName: "sluice.test",
                                                     timeout: .seconds(60))
        // Bounded: a listener that never hands the connection out fails the test, not hangs it.
        let served = await withTaskGroup(of: TLSConnection?.self) { group in
            group.addTask { await listener.accept() }
            group.addTask { try? await Task.sleep(for: .seconds(20)); return nil }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        let connection = try #require(served, "the real client was not handed out: \(listener.failedHandshakes)")
        try await client.send(Array("ping".utf8))
        var iterator = connection.inbound.makeAsyncIterator()
        let received = try await iterator.next()
        #expect(received == Array("ping".utf8))
        var failed = listener.failedHandshakes
        for _ in 0..<200 where failed.count < 2 {
            try await Task.sleep(for: .milliseconds(50))
            failed = listener.failedHandshakes
        }
        #expect(failed.count == 2 && failed.last != nil, "\(failed)")
        withExtendedLifetime((garbage, silent)) {}
    }
}
