// TLS echo over the async edge: OpenSSL's handshake, Sluice's record layer, the io_uring engine:
//
//   swift run tls-echo 127.0.0.1:4433 [CERT.pem KEY.pem] [SECONDS]
//
// Without a certificate it makes a self-signed one for "localhost" (clients must not verify it:
// `openssl s_client -connect 127.0.0.1:4433`). It stops after SECONDS (default 30).
#if canImport(Glibc)
import Glibc
#endif
import Logging
import Sluice

let arguments = Array(CommandLine.arguments.dropFirst())
// ADDRESS:PORT, then a certificate and its key or neither, then SECONDS or nothing.
let files = arguments.count >= 3 ? (arguments[1], arguments[2]) : nil
let secondsArgument = arguments.count == 2 || arguments.count == 4 ? arguments.last : nil
guard arguments.count <= 4, let endpoint = IPEndpoint(arguments.first ?? "127.0.0.1:4433"),
      let seconds = secondsArgument.map({ Int($0) }) ?? 30, seconds > 0 else {
    Logger(label: "tls-echo").error("usage: tls-echo [ADDRESS:PORT [CERT.pem KEY.pem] [SECONDS]]")
    exit(2)
}

// README: begin tls
do {
    let context = try TLSContext(files.map { .server(certificateChainFile: $0.0, privateKeyFile: $0.1) }
                                 ?? .server(selfSignedName: "localhost"))
    let loop = try TCPEventLoop()
    let listener = try await TLSListener(on: endpoint, loop: loop, context: context)
    print("TLS echo on \(listener.localEndpoint)")
    let server = Task {
        await withDiscardingTaskGroup { group in
            while let connection = await listener.accept() {   // handshake done
                group.addTask {
                    do {
                        for try await plaintext in connection.inbound { try await connection.send(plaintext) }
                    } catch {
                        print("\(connection.negotiated.cipherSuiteName): \(error)")
                    }
                    await connection.close()                    // close_notify back
                }
            }
        }
    }
    try await Task.sleep(for: .seconds(seconds))
    let report = loop.shutdown()                                // the listener and every connection end
    await server.value
    print(report)
} catch {
    Logger(label: "tls-echo").error("\(error)")                   // what failed, and what to do about it
    exit(1)
}
// README: end
