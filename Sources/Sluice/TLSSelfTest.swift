#if canImport(Glibc)
import Glibc
#endif
import SluiceSystem
import SluiceTLS

/// What `sluice tls selftest` checks: what the kernel offloads, and that the user-space record
/// layer carries every version and AEAD (a handshake between two engines in memory, 1 MiB each
/// way, a KeyUpdate each way on TLS 1.3, close_notify both ways).
public enum TLSSelfTest {
    /// One version and AEAD's outcome.
    public struct Result: Sendable, CustomStringConvertible {
        /// The version.
        public var version: TLSVersion
        /// The AEAD.
        public var aead: TLSAEAD
        /// What went wrong, or nil.
        public var failure: String?

        public var description: String {
            "\(version) \(aead): " + (failure.map { "FAILED, \($0)" } ?? "ok (handshake, 1 MiB each way, \(version == .tls13 ? "KeyUpdate both ways, " : "")close_notify)")
        }
    }

    /// The OpenSSL the handshake runs on.
    public static var openSSLVersion: String { TLSContext.openSSLVersion }

    /// What the kernel offers for kTLS.
    public static func kernel() -> KernelTLS.Support { KernelTLS.probe() }

    /// Runs every version and AEAD through the user-space record layer.
    public static func recordLayer() -> [Result] {
        var results: [Result] = []
        for version in [TLSVersion.tls13, .tls12] {
            for aead in TLSAEAD.allCases {
                var result = Result(version: version, aead: aead, failure: nil)
                do throws(TLSError) {
                    try exercise(version: version, aead: aead)
                } catch {
                    result.failure = "\(error)"
                }
                results.append(result)
            }
        }
        return results
    }

    static func exercise(version: TLSVersion, aead: TLSAEAD) throws(TLSError) {
        var serverConfiguration = TLSConfiguration.server(selfSignedName: "selftest.sluice.test")
        var clientConfiguration = TLSConfiguration.client(peerVerification: .none)
        serverConfiguration.maximumVersion = version
        clientConfiguration.maximumVersion = version
        serverConfiguration.tls13AEADs = [aead]
        serverConfiguration.tls12AEADs = [aead]
        clientConfiguration.tls13AEADs = [aead]
        clientConfiguration.tls12AEADs = [aead]
        let server = try TLSEngine(context: try TLSContext(serverConfiguration))
        let client = try TLSEngine(context: try TLSContext(clientConfiguration), serverName: "selftest.sluice.test")
        var toServer: [UInt8] = [], toClient: [UInt8] = []
        var atServer = 0, atClient = 0
        var serverHash: UInt64 = 0, clientHash: UInt64 = 0
        func pump() throws(TLSError) {
            for _ in 0..<64 {
                toServer += client.outbound; client.consumeOutbound(client.outbound.count)
                toClient += server.outbound; server.consumeOutbound(server.outbound.count)
                if toServer.isEmpty && toClient.isEmpty { return }
                var inbound = toServer, outbound = toClient
                toServer = []; toClient = []
                _ = inbound.withUnsafeMutableBytes { server.receive($0) { atServer += $0.count; serverHash = mix(serverHash, UnsafeRawBufferPointer($0)) } }
                _ = outbound.withUnsafeMutableBytes { client.receive($0) { atClient += $0.count; clientHash = mix(clientHash, UnsafeRawBufferPointer($0)) } }
                if let error = server.error ?? client.error { throw error }
            }
        }
        _ = client.start()
        try pump()
        guard server.state == .established, client.state == .established else {
            throw TLSError("the self-test handshake", hint: "it did not finish", library: "")
        }
        let payload = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let expected = payload.withUnsafeBytes { mix(0, $0) }
        for (engine, isClient) in [(client, true), (server, false)] {
            if version == .tls13 { engine.updateKeys(requestPeerUpdate: true) }
            var stream = engine.outbound
            engine.consumeOutbound(stream.count)
            var at = 0
            while at < payload.count {
                let n = min(16384, payload.count - at)
                let start = stream.count
                stream += repeatElement(0, count: n + engine.recordOverhead)
                let length = stream.withUnsafeMutableBytes { out in
                    payload.withUnsafeBytes { engine.seal(UnsafeRawBufferPointer(rebasing: $0[at..<at + n]), into: out.baseAddress! + start) }
                }
                stream.removeLast(n + engine.recordOverhead - length)
                at += n
            }
            if isClient { toServer += stream } else { toClient += stream }
            try pump()
        }
        client.close()
        server.close()
        try pump()
        guard atServer == payload.count, atClient == payload.count, serverHash == expected, clientHash == expected else {
            throw TLSError("the self-test transfer", hint: "the bytes that arrived differ from those sent", library: "")
        }
        guard client.state == .closed, server.state == .closed else {
            throw TLSError("the self-test close", hint: "close_notify did not end both directions", library: "")
        }
    }

    /// A running FNV-1a over byte runs (the order of runs matters, not their boundaries).
    static func mix(_ hash: UInt64, _ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var h = hash == 0 ? 0xcbf2_9ce4_8422_2325 : hash
        for byte in bytes { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return h
    }
}
