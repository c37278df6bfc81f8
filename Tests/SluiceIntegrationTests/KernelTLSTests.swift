#if canImport(Glibc)
import Glibc
#endif
import Sluice
import SluiceTestSupport
import Testing

/// kTLS where the kernel has it: a client that handshakes with Sluice's engine, hands its records
/// to the kernel, and talks plaintext through the socket to `sluice tls serve --echo` (Sluice's
/// user-space records on the other end). Here the kernel has no TLS module: one skip line, and
/// the TLS suites run over the user-space record layer.
@Suite("kTLS offload", .serialized)
struct KernelTLSTests {
    @Test("records handed to the kernel after Sluice's handshake reach Sluice's record layer and back")
    func offloadedClient() throws {
        let support = KernelTLS.probe()
        guard support.isAvailable else {
            print("skip: kTLS unavailable on this kernel (\(support.unavailable!.errno.map { "errno \($0.rawValue)" } ?? "")); the TLS suites run over the user-space record layer")
            return
        }
        guard TLSInteropTests.peersAvailable() else { return }
        for version in ["1.3", "1.2"] {
            let (server, port) = try TLSInteropTests.serve(["--echo", "--min-version", version, "--max-version", version])
            let client = try TLSWireFaultTests.WireClient(port: port)
            try #require(client.engine.state == .established)
            if version == "1.3" { client.readOnce() }   // the tickets that follow the handshake
            try KernelTLSOffload.enable(on: client.socket.descriptor, engine: client.engine)
            let message = Array("through the kernel's records, TLS \(version)".utf8)
            _ = message.withUnsafeBytes { send(client.socket.descriptor, $0.baseAddress, $0.count, 0) }
            var echoed: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while echoed.count < message.count {
                let n = recv(client.socket.descriptor, &buffer, buffer.count, 0)
                guard n > 0 else { break }
                echoed += buffer[..<n]
            }
            #expect(echoed == message, "TLS \(version)")
            let report = TLSInteropTests.finish(server)
            #expect(report.contains("1 handshakes: 1 completed (0 resumed), 0 failed"), "\(report)")
        }
    }
}
